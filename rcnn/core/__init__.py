"""Training machinery: OHEM op, data loader, metrics, LR schedule, checkpoints."""
