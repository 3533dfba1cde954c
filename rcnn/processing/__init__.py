"""Pure-numpy box, anchor and NMS math (no config, no MXNet)."""
