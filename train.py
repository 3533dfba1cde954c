"""Train RetinaFace: ``python train.py --network mnet|resnet ...`` (``--help`` lists every flag).

The command line and the training loop live in rcnn/tools/train.py (installed as ``retinaface-train``).
"""
from rcnn.tools.train import cli

if __name__ == '__main__':
    cli()
