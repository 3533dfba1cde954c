"""Evaluate a RetinaFace model on WIDER FACE: ``python test.py --prefix model/mnet.25 --epoch 0 ...``
(``--help`` lists every flag).

The command line lives in rcnn/tools/evaluate.py (installed as ``retinaface-test``).
"""
import sys

from rcnn.tools.evaluate import main

if __name__ == '__main__':
    sys.exit(main())
