"""The onnxruntime side of the side-by-side benchmark and of the ONNX round-trip test.

Runs in a process of its own and imports nothing from this repository: the decode and NMS below are a plain
numpy version of the RetinaFace post-processing a deployer would write (net3 anchors: strides 32/16/8, 2
anchors per cell), an independent check of the export.

    .venv/bin/python bench/ort_runner.py --onnx m.onnx --inputs in.npz --threads 1 --runs 30 --out res.json
    .venv/bin/python bench/ort_runner.py --onnx m.onnx --inputs in.npz --dump raw.npz

--inputs: an .npz of float32 tensors (1, 3, H, W) (already normalised, as the detector feeds MXNet). Timing:
the median over --runs of onnxruntime's forward and of forward + decode + NMS (end to end from the tensor).
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort

STRIDES = {32: (32, 16), 16: (8, 4), 8: (2, 1)}  # stride -> anchor scales (base 16, ratio 1)


def base_anchors(scales):
    out = []
    for s in scales:
        side = 16 * s
        c = 7.5
        out.append([c - 0.5 * (side - 1), c - 0.5 * (side - 1), c + 0.5 * (side - 1), c + 0.5 * (side - 1)])
    return np.array(out, dtype=np.float32)


def anchor_plane(stride, height, width):
    base = base_anchors(STRIDES[stride])
    sx, sy = np.meshgrid(np.arange(width) * stride, np.arange(height) * stride)
    shifts = np.stack([sx, sy, sx, sy], axis=-1).reshape(-1, 1, 4).astype(np.float32)
    return (shifts + base[None]).reshape(-1, 4)


def decode(outputs, names, height, width, threshold):
    """(boxes (K, 4), scores (K,), landmarks (K, 5, 2)) of one image over all strides."""
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        prob = outputs[names.index('face_rpn_cls_prob_reshape_stride%d' % stride)][0]
        bbox = outputs[names.index('face_rpn_bbox_pred_stride%d' % stride)][0]
        lmk = outputs[names.index('face_rpn_landmark_pred_stride%d' % stride)][0]
        a = prob.shape[0] // 2
        h, w = bbox.shape[1:]
        score = prob[a:].transpose(1, 2, 0).reshape(-1)
        keep = np.where(score >= threshold)[0]
        if not len(keep):
            continue
        anchors = anchor_plane(stride, h, w)[keep]
        d = bbox.transpose(1, 2, 0).reshape(-1, 4)[keep]
        aw = anchors[:, 2] - anchors[:, 0] + 1.0
        ah = anchors[:, 3] - anchors[:, 1] + 1.0
        cx = anchors[:, 0] + 0.5 * (aw - 1.0)
        cy = anchors[:, 1] + 0.5 * (ah - 1.0)
        px, py = d[:, 0] * aw + cx, d[:, 1] * ah + cy
        pw, ph = np.exp(d[:, 2]) * aw, np.exp(d[:, 3]) * ah
        b = np.stack([px - 0.5 * (pw - 1.0), py - 0.5 * (ph - 1.0), px + 0.5 * (pw - 1.0), py + 0.5 * (ph - 1.0)], 1)
        b[:, 0::2] = np.clip(b[:, 0::2], 0, width - 1)
        b[:, 1::2] = np.clip(b[:, 1::2], 0, height - 1)
        lm = lmk.transpose(1, 2, 0).reshape(-1, 5, 2)[keep]
        lm = np.stack([lm[:, :, 0] * aw[:, None] + cx[:, None], lm[:, :, 1] * ah[:, None] + cy[:, None]], -1)
        boxes.append(b)
        scores.append(score[keep])
        points.append(lm)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return np.vstack(boxes), np.concatenate(scores), np.concatenate(points)


def nms(boxes, scores, iou):
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind='stable')
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        order = order[1:][inter / (areas[i] + areas[order[1:]] - inter) <= iou]
    return np.array(keep, dtype=np.int64)


def detect(session, names, tensor, threshold, iou):
    outputs = session.run(None, {'data': tensor})
    boxes, scores, points = decode(outputs, names, tensor.shape[2], tensor.shape[3], threshold)
    keep = nms(boxes, scores, iou)
    return np.hstack([boxes[keep], scores[keep, None]]), points[keep]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--onnx', required=True)
    p.add_argument('--inputs', required=True, help='.npz of (1, 3, H, W) float32 tensors')
    p.add_argument('--threads', type=int, default=1, help='intra-op threads')
    p.add_argument('--runs', type=int, default=30)
    p.add_argument('--threshold', type=float, default=0.5)
    p.add_argument('--nms', type=float, default=0.4)
    p.add_argument('--out', help='timings and detections as JSON')
    p.add_argument('--dump', help='raw outputs of every input as .npz (<input>/<output name>)')
    args = p.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(args.onnx, opts, providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    inputs = np.load(args.inputs)
    if args.dump:
        raw = {}
        for key in inputs.files:
            for name, value in zip(names, session.run(None, {'data': inputs[key]})):
                raw['%s/%s' % (key, name)] = value
        np.savez(args.dump, **raw)
    if args.out:
        result = {'onnxruntime': ort.__version__, 'numpy': np.__version__, 'threads': args.threads, 'inputs': {}}
        for key in inputs.files:
            x = inputs[key]
            for _ in range(3):
                detect(session, names, x, args.threshold, args.nms)
            fwd, e2e = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                session.run(None, {'data': x})
                t1 = time.perf_counter()
                faces, _ = detect(session, names, x, args.threshold, args.nms)
                t2 = time.perf_counter()
                fwd.append(t1 - t0)
                e2e.append(t2 - t1)
            result['inputs'][key] = {'forward_ms': 1e3 * statistics.median(fwd), 'e2e_ms': 1e3 * statistics.median(e2e),
                                     'faces': faces.tolist()}
        with open(args.out, 'w') as f:
            json.dump(result, f)


if __name__ == '__main__':
    main()
