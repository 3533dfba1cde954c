"""RetinaFace for MXNet: config, symbols, data, training and evaluation."""
