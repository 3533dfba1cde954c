"""The embedded default dataset: drawn faces in the exact WIDER/RetinaFace layout.

    python -m rcnn.dataset.synthetic --output data/retinaface --train 400 --val 100 --seed 0

Writes ``<output>/{train,val}/images/<event>/<name>.jpg`` and ``label.txt`` (train: x y w h + 5 x
(lx ly 0) + blur, the 20-number RetinaFace train format; val: x y w h). Each image has a cluttered
background (gradients, noise, shapes, face-coloured blobs without features as hard negatives) and
1-6 faces of 14-180 px in many skin tones, with yaw (features shifted sideways), roll (in-plane
rotation), hair, and the five landmarks: left eye, right eye, nose tip, left and right mouth corner
(left/right as seen in the image). Deterministic for a seed.
"""
import argparse
import logging
import math
import os
import sys

import cv2
import numpy as np
from rcnn.cli import HelpFormatter

__all__ = ['generate', 'draw_face']
logger = logging.getLogger(__name__)
EVENTS = ('0--Parade', '1--Handshaking', '2--Demonstration', '3--Riot')
SKIN = [(60, 80, 120), (90, 120, 170), (120, 160, 215), (150, 190, 235), (40, 60, 90), (110, 140, 200)]


def _rot(points, centre, angle):
    c, s = math.cos(angle), math.sin(angle)
    p = np.asarray(points, dtype=np.float64) - centre
    return np.stack([p[:, 0] * c - p[:, 1] * s, p[:, 0] * s + p[:, 1] * c], axis=1) + centre


def draw_face(img, cx, cy, size, rng):
    """Draw one face of height `size` centred at (cx, cy); returns (box x1 y1 x2 y2, landmarks (5, 2))."""
    h = float(size)
    w = h * rng.uniform(0.72, 0.85)
    roll = math.radians(rng.uniform(-20, 20))
    yaw = rng.uniform(-0.35, 0.35)                 # features shift sideways, as a head turning
    skin = np.array(SKIN[rng.randint(len(SKIN))], dtype=np.float64) + rng.uniform(-15, 15, 3)
    centre = np.array([cx, cy])
    # hair behind the top of the head
    hair = tuple(int(v) for v in rng.randint(0, 90, 3))
    axes = (int(w * 0.55), int(h * 0.55))
    cv2.ellipse(img, (int(cx), int(cy - 0.06 * h)), axes, math.degrees(roll), 180, 360, hair, -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), int(cy)), (int(w / 2), int(h / 2)), math.degrees(roll), 0, 360,
                tuple(int(v) for v in np.clip(skin, 0, 255)), -1, cv2.LINE_AA)
    fx = yaw * w * 0.5
    eye_dx, eye_y = w * 0.21, -h * 0.1
    pts = np.array([[cx - eye_dx + fx * 1.1, cy + eye_y], [cx + eye_dx + fx * 1.1, cy + eye_y],
                    [cx + fx * 1.5, cy + h * 0.08],
                    [cx - w * 0.17 + fx, cy + h * 0.25], [cx + w * 0.17 + fx, cy + h * 0.25]])
    pts = _rot(pts, centre, roll)
    eye_r = max(1, int(h * rng.uniform(0.045, 0.065)))
    dark = tuple(int(v) for v in rng.randint(0, 60, 3))
    for x, y in pts[:2]:
        cv2.circle(img, (int(round(x)), int(round(y))), int(eye_r * 1.8), (235, 235, 235), -1, cv2.LINE_AA)
        cv2.circle(img, (int(round(x)), int(round(y))), eye_r, dark, -1, cv2.LINE_AA)
    brow = _rot(np.array([[-eye_dx * 1.3, -h * 0.2], [-eye_dx * 0.6, -h * 0.22],
                          [eye_dx * 0.6, -h * 0.22], [eye_dx * 1.3, -h * 0.2]]) + [cx + fx, cy], centre, roll)
    thick = max(1, int(h * 0.03))
    cv2.line(img, tuple(brow[0].astype(int)), tuple(brow[1].astype(int)), hair, thick, cv2.LINE_AA)
    cv2.line(img, tuple(brow[2].astype(int)), tuple(brow[3].astype(int)), hair, thick, cv2.LINE_AA)
    nose_top = _rot(np.array([[cx + fx * 1.2, cy - h * 0.05]]), centre, roll)[0]
    shade = tuple(int(v) for v in np.clip(skin * 0.65, 0, 255))
    cv2.line(img, tuple(nose_top.astype(int)), tuple(pts[2].astype(int)), shade, thick, cv2.LINE_AA)
    cv2.circle(img, tuple(pts[2].astype(int)), max(1, int(h * 0.03)), shade, -1, cv2.LINE_AA)
    lip = (int(rng.randint(100, 200)), int(rng.randint(30, 90)), int(rng.randint(120, 220)))
    mid = (pts[3] + pts[4]) / 2 + _rot(np.array([[0, h * 0.04]]), np.zeros(2), roll)[0]
    cv2.fillPoly(img, [np.array([pts[3], mid, pts[4]], dtype=np.int32)], lip, cv2.LINE_AA)
    cv2.polylines(img, [np.array([pts[3], mid, pts[4]], dtype=np.int32)], False, lip, thick, cv2.LINE_AA)
    # axis-aligned box of the rotated head ellipse (chin to hairline), the WIDER-style face box
    ca, sa = math.cos(roll), math.sin(roll)
    half_w = math.sqrt((w / 2 * ca) ** 2 + (h / 2 * sa) ** 2)
    half_h = math.sqrt((w / 2 * sa) ** 2 + (h / 2 * ca) ** 2)
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h]), pts


def _background(rng, height, width):
    c0, c1 = rng.randint(0, 256, 3), rng.randint(0, 256, 3)
    t = np.linspace(0, 1, width if rng.rand() < 0.5 else height)
    grad = (c0[None] * (1 - t[:, None]) + c1[None] * t[:, None]).astype(np.float32)
    img = np.broadcast_to(grad[None] if len(t) == width else grad[:, None], (height, width, 3)).copy()
    img += rng.normal(0, rng.uniform(2, 14), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.randint(8, 30)):
        colour = tuple(int(v) for v in rng.randint(0, 256, 3))
        kind = rng.randint(4)
        x, y = int(rng.randint(0, width)), int(rng.randint(0, height))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.randint(5, 120)), y + int(rng.randint(5, 120))), colour, -1)
        elif kind == 1:
            cv2.line(img, (x, y), (int(rng.randint(0, width)), int(rng.randint(0, height))), colour,
                     int(rng.randint(1, 6)), cv2.LINE_AA)
        elif kind == 2:
            cv2.circle(img, (x, y), int(rng.randint(3, 50)), colour, -1, cv2.LINE_AA)
        else:  # face-coloured blob without features: a hard negative
            skin = SKIN[rng.randint(len(SKIN))]
            cv2.ellipse(img, (x, y), (int(rng.randint(6, 50)), int(rng.randint(8, 65))), float(rng.randint(180)),
                        0, 360, skin, -1, cv2.LINE_AA)
    return img


def make_image(rng, height, width, max_faces=6):
    """(BGR image, boxes (G, 4) x1 y1 x2 y2, landmarks (G, 5, 2)) with non-overlapping faces."""
    img = _background(rng, height, width)
    boxes, points = [], []
    for _ in range(rng.randint(1, max_faces + 1) * 4):  # attempts
        if len(boxes) >= max_faces:
            break
        size = float(np.exp(rng.uniform(np.log(14), np.log(min(180, 0.7 * min(height, width))))))
        cx, cy = rng.uniform(size * 0.4, width - size * 0.4), rng.uniform(size * 0.5, height - size * 0.5)
        cand = np.array([cx - size * 0.5, cy - size * 0.6, cx + size * 0.5, cy + size * 0.6])
        if any(min(cand[2], b[2]) > max(cand[0], b[0]) and min(cand[3], b[3]) > max(cand[1], b[1]) for b in boxes):
            continue
        box, pts = draw_face(img, cx, cy, size, rng)
        boxes.append(box)
        points.append(pts)
    return img, np.array(boxes).reshape(-1, 4), np.array(points).reshape(-1, 5, 2)


def _write_split(root, split, count, rng, with_landmarks):
    lines = []
    for i in range(count):
        event = EVENTS[i % len(EVENTS)]
        height, width = int(rng.choice([320, 384, 448])), int(rng.choice([384, 448, 512]))
        img, boxes, points = make_image(rng, height, width)
        name = '%s_synthetic_%s_%d.jpg' % (event.split('--')[0], split, i)
        folder = os.path.join(root, split, 'images', event)
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(os.path.join(folder, name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines.append('# %s/%s\n' % (event, name))
        for box, pts in zip(boxes, points):
            x1, y1 = max(0.0, box[0]), max(0.0, box[1])
            x2, y2 = min(width - 1.0, box[2]), min(height - 1.0, box[3])
            # WIDER's convention, which the original reader and the official evaluator share: the face spans
            # x .. x + w (x2 = x + w, measured as w + 1 pixels)
            face = '%.1f %.1f %.1f %.1f' % (x1, y1, x2 - x1, y2 - y1)
            if with_landmarks:
                face += ''.join(' %.2f %.2f 0.0' % (x, y) for x, y in pts) + ' 0.5'
            lines.append(face + '\n')
    with open(os.path.join(root, split, 'label.txt'), 'w') as f:
        f.writelines(lines)
    return sum(1 for line in lines if not line.startswith('#'))


def generate(output, train=400, val=100, seed=0):
    """Write the train and val splits; returns {split: number of faces}."""
    rng = np.random.RandomState(seed)
    counts = {'train': _write_split(output, 'train', train, rng, True),
              'val': _write_split(output, 'val', val, rng, False)}
    logger.info('synthetic dataset in %s: %d train images (%d faces), %d val images (%d faces)',
                output, train, counts['train'], val, counts['val'])
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate the embedded demo dataset (RetinaFace layout).',
                                     formatter_class=HelpFormatter)
    parser.add_argument('--output', default='data/retinaface', help='dataset root (gets train/ and val/)')
    parser.add_argument('--train', type=int, default=400, help='training images')
    parser.add_argument('--val', type=int, default=100, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    generate(args.output, args.train, args.val, args.seed)
    return 0


if __name__ == '__main__':
    sys.exit(main())
