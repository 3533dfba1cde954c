"""RetinaFace for MXNet: config, symbols, data, training and evaluation.

Importing ``rcnn`` changes nothing in the process. MXNet is imported at its first use through
``rcnn.compat.mx`` (which first restores the numpy names MXNet 1.9.1 reads and loads the CUDA wheels' libraries).
"""
