"""Train RetinaFace: ``python train.py --network mnet|resnet ...`` (``--help`` lists every flag).

The command line and the training loop live in rcnn/tools/train.py (installed as ``retinaface-train``).
"""
from rcnn.tools import train_command

if __name__ == '__main__':
    train_command()
