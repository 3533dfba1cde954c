"""Training throughput on this machine: the full training step (mnet, resnet) and the data pipeline alone.

    python bench/bench_train.py [--size 320] [--batches 10] [--workers 0,1,2]

Uses a generated dataset (rcnn.dataset.synthetic) in a temporary folder.
"""
import argparse
import os
import sys
import tempfile
import time

import mxnet as mx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcnn.config import get_config  # noqa: E402
from rcnn.core.loader import CropLoader  # noqa: E402
from rcnn.dataset.retinaface import RetinaFaceDataset, flip_roidb  # noqa: E402
from rcnn.dataset.synthetic import generate  # noqa: E402
from rcnn.symbol import get_symbol  # noqa: E402
from rcnn.symbol.common import label_names  # noqa: E402


def data_rate(roidb, cfg, batch, workers, batches):
    loader = CropLoader(roidb, cfg, batch, workers=workers, seed=0)
    loader.next()  # pool start-up and first batch
    t = time.perf_counter()
    for _ in range(batches):
        loader.next()
    rate = batches * batch / (time.perf_counter() - t)
    loader.close()
    return rate


def train_rate(network, roidb, cfg, batch, batches):
    loader = CropLoader(roidb, cfg, batch, workers=0, seed=0)
    data = [loader.next() for _ in range(2)]
    sym = get_symbol(network, 'train', cfg)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE), context=mx.cpu())
    mod.bind(loader.provide_data, loader.provide_label)
    mod.init_params(mx.init.Xavier())
    mod.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 0.001, 'momentum': 0.9})
    for b in data:  # warm-up
        mod.forward_backward(b)
        mod.update()
    mx.nd.waitall()
    t = time.perf_counter()
    for i in range(batches):
        mod.forward_backward(data[i % 2])
        mod.update()
    mx.nd.waitall()
    loader.close()
    return batches * batch / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--size', type=int, default=320, help='training crop side for mnet')
    parser.add_argument('--resnet_size', type=int, default=256, help='training crop side for resnet')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--batches', type=int, default=10)
    parser.add_argument('--workers', default='0,1,2')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(os.path.join(tmp, 'retinaface'), train=96, val=1, seed=0)  # 192 samples with flips
        roidb = RetinaFaceDataset('train', tmp, os.path.join(tmp, 'retinaface')).gt_roidb()
        roidb = roidb + flip_roidb(roidb)
        print('%-40s %10s' % ('case (CPU, %d threads)' % os.cpu_count(), 'images/s'))
        for network, size in (('mnet', args.size), ('resnet', args.resnet_size)):
            cfg = get_config(network, IMAGE_SIZE=size, TRAIN__BATCH_IMAGES=args.batch, DCN_PORTABLE=True)
            print('%-40s %10.1f' % ('train step %s %dx%d, batch %d' % (network, size, size, args.batch),
                                    train_rate(network, roidb, cfg, args.batch, args.batches)))
        cfg = get_config('mnet', IMAGE_SIZE=args.size, TRAIN__BATCH_IMAGES=args.batch)
        for w in [int(v) for v in args.workers.split(',')]:
            print('%-40s %10.1f' % ('data pipeline %dx%d, %d worker(s)' % (args.size, args.size, w),
                                    data_rate(roidb, cfg, args.batch, w, args.batches * 2)))


if __name__ == '__main__':
    main()
