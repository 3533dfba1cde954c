"""Where the AP is lost: AP per WIDER event, recall per face size at a fixed precision, and a picture of the
worst misses and the strongest false positives.

Everything is computed with the official toolkit's matching and score normalisation (``widerface_eval``): the
per-event AP is the toolkit's AP over that event's images (scores normalised over the whole run, so an event's
thresholds are the run's); the operating point is the lowest of the toolkit's 1000 thresholds at which the
hardest setting (Hard, or 'all' for a label.txt ground truth) still reaches ``precision``; a face is found there
when a prediction at or above it is the first to match it.
"""
import os

import cv2
import numpy as np

from rcnn.dataset import widerface_eval as wider
from rcnn.fileio import atomic_path

__all__ = ['SIZE_BUCKETS', 'PRECISION', 'breakdown', 'format_breakdown', 'misses_picture']
SIZE_BUCKETS = ((0, 16), (16, 32), (32, 64), (64, 128), (128, None))  # face height in the image, pixels
PRECISION = 0.9


def _hardest(gt):
    return 'hard' if 'hard' in gt.keep else list(gt.keep)[-1]


def _bucket_name(lo, hi):
    return '<%d' % hi if lo == 0 else ('>=%d' % lo if hi is None else '%d-%d' % (lo, hi))


def operating_point(norm, gt, setting, matches, precision):
    """(normalised threshold, precision, recall) of the lowest toolkit threshold with precision >= `precision`,
    or None where no threshold reaches it."""
    prec, rec, _ = wider.pr_curve(norm, gt, setting, matches)
    thr = wider._thresholds()
    ok = np.flatnonzero(np.nan_to_num(prec, nan=0.0) >= precision)
    if not len(ok):
        return None
    i = ok[-1]  # thresholds fall with the index: the last passing one finds the most faces
    return float(thr[i]), float(prec[i]), float(rec[i])


def found_faces(det, boxes, counted, idx, threshold):
    """Boolean per GT face: counted and first matched by a prediction with normalised score >= threshold."""
    found = np.zeros(len(boxes), dtype=bool)
    if idx is None or not len(det):
        return found
    scores = det[:, 4]
    usable = (idx >= 0) & (np.nan_to_num(scores, nan=np.inf) >= threshold)  # NaN sorts first: MATLAB keeps it
    found[idx[usable]] = True
    keep = np.zeros(len(boxes), dtype=bool)
    keep[counted] = True
    return found & keep


def breakdown(preds, gt, precision=PRECISION, prepared=None):
    """{'events': {event: {setting: AP, 'images': n, 'faces': n of the hardest setting}},
        'recall_at_precision': {...} or None}, for raw sorted predictions aligned with gt.images.

    prepared: ``widerface_eval.prepare(preds, gt)`` where the caller has it already (the AP computed it)."""
    norm, matches = prepared or wider.prepare(preds, gt)
    hardest = _hardest(gt)
    events = {}
    for event in sorted({e for e, _ in gt.images}):
        idx = [i for i, (e, _) in enumerate(gt.images) if e == event]
        sub = wider.GroundTruth([gt.images[i] for i in idx], [gt.boxes[i] for i in idx],
                                {k: [v[i] for i in idx] for k, v in gt.keep.items()}, gt.source)
        row = {'images': len(idx)}
        for setting in gt.keep:
            prec, rec, faces = wider.pr_curve([norm[i] for i in idx], sub, setting, [matches[i] for i in idx])
            row[setting] = wider.voc_ap(rec, prec) if faces else None
            if setting == hardest:
                row['faces'] = faces
        events[event] = row
    point = operating_point(norm, gt, hardest, matches, precision)
    at = None
    if point is not None:
        threshold, p, r = point
        raw = [d[:, 4][~np.isnan(d[:, 4])] for d in preds if len(d)]
        raw = np.concatenate(raw) if raw else np.zeros(0)
        lo, hi = (float(raw.min()), float(raw.max())) if raw.size else (0.0, 0.0)
        buckets = []
        heights = [b[:, 3].astype(np.float64) for b in gt.boxes]
        found = [found_faces(norm[i], gt.boxes[i], gt.keep[hardest][i], matches[i], threshold)
                 for i in range(len(gt.images))]
        for b_lo, b_hi in SIZE_BUCKETS:
            n = hit = 0
            for h, f, counted in zip(heights, found, gt.keep[hardest]):
                inside = (h[counted] >= b_lo) & (h[counted] < (np.inf if b_hi is None else b_hi))
                n += int(inside.sum())
                hit += int(f[counted][inside].sum())
            buckets.append({'height': _bucket_name(b_lo, b_hi), 'faces': n, 'recall': hit / n if n else None})
        at = {'setting': hardest, 'precision_asked': precision, 'precision': p, 'recall': r,
              'threshold_normalised': threshold, 'score': lo + threshold * (hi - lo), 'buckets': buckets}
    return {'events': events, 'recall_at_precision': at, '_found': None if point is None else found,
            '_norm': norm, '_matches': matches}


def format_breakdown(result, settings):
    """Log lines: per event AP, and recall per face height at the operating point."""
    lines = ['AP per event (%s):' % ', '.join(s.capitalize() for s in settings)]
    width = max([len(e) for e in result['events']] + [5])
    for event, row in result['events'].items():
        aps = ' '.join('%6s' % ('-' if row[s] is None else '%.4f' % row[s]) for s in settings)
        lines.append('  %-*s %s  (%d images, %d faces)' % (width, event, aps, row['images'], row.get('faces', 0)))
    at = result['recall_at_precision']
    if at is None:
        lines.append('recall per face height: no threshold reaches precision %.2f' % PRECISION)
    else:
        lines.append('recall per face height at precision %.3f (%s, score >= %.3f): %s'
                     % (at['precision'], at['setting'].capitalize(), at['score'],
                        ', '.join('%s px %s (%d)' % (b['height'], '-' if b['recall'] is None else '%.3f' % b['recall'],
                                                     b['faces']) for b in at['buckets'])))
    return lines


def _tile(img, box, colour, caption, side=160):
    """A square tile around box (x, y, w, h) with context, the box drawn and a caption."""
    x, y, w, h = [float(v) for v in box[:4]]
    cx, cy, half = x + w / 2, y + h / 2, max(w, h) * 1.0 + 8
    x1, y1 = int(max(0, cx - half)), int(max(0, cy - half))
    x2, y2 = int(min(img.shape[1], cx + half)), int(min(img.shape[0], cy + half))
    crop = img[y1:y2, x1:x2]
    tile = np.zeros((side, side, 3), dtype=np.uint8)
    if crop.size:
        s = side / max(crop.shape[:2])
        small = cv2.resize(crop, (max(1, int(crop.shape[1] * s)), max(1, int(crop.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        tile[:small.shape[0], :small.shape[1]] = small
        bx1, by1 = int((x - x1) * s), int((y - y1) * s)
        cv2.rectangle(tile, (bx1, by1), (int(bx1 + w * s), int(by1 + h * s)), colour, 2)
    cv2.rectangle(tile, (0, side - 16), (side, side), (0, 0, 0), -1)
    cv2.putText(tile, caption[:26], (3, side - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1)
    return tile


def misses_picture(result, preds, gt, image_path, out_path, count=8):
    """PNG of the `count` largest counted faces missed at the operating point (green boxes, top row) and the
    `count` strongest predictions that match no face at all (red, bottom row); returns its path or None.

    image_path: (event, name) -> the image file, or None where it is not at hand.
    """
    hardest = _hardest(gt)
    found, matches = result['_found'], result['_matches']
    misses, false_pos = [], []
    for i, key in enumerate(gt.images):
        if found is not None:
            counted = gt.keep[hardest][i]
            for g in counted[~found[i][counted]]:
                box = gt.boxes[i][g]
                misses.append((float(box[3]), i, box))
        det = preds[i]
        if len(det):
            idx = matches[i] if matches[i] is not None else np.full(len(det), -1)
            for k in np.flatnonzero(idx < 0):
                false_pos.append((float(det[k, 4]), i, det[k]))
    misses.sort(key=lambda m: -m[0])
    false_pos.sort(key=lambda f: -np.nan_to_num(f[0], nan=-np.inf))
    rows = []
    cache = {}
    for items, colour, caption in ((misses, (0, 200, 0), lambda m: 'missed %dpx %s' % (m[0], gt.images[m[1]][1])),
                                   (false_pos, (0, 0, 255), lambda f: 'FP %.2f %s' % (f[0], gt.images[f[1]][1]))):
        tiles = []
        for item in items:
            if len(tiles) == count:
                break
            path = image_path(gt.images[item[1]])
            if path not in cache:
                cache[path] = cv2.imread(path) if path else None
            if cache[path] is None:
                continue
            tiles.append(_tile(cache[path], item[2], colour, caption(item)))
        tiles += [np.zeros((160, 160, 3), np.uint8)] * (count - len(tiles))
        rows.append(np.hstack(tiles))
    if not any(r.any() for r in rows):
        return None
    with atomic_path(out_path, 'misses picture') as tmp:
        ok, data = cv2.imencode('.png', np.vstack(rows))
        with open(tmp, 'wb') as f:
            f.write(data.tobytes())
    return out_path


def explain(preds, gt, prepared=None, out_dir=None, image_path=None, precision=PRECISION):
    """Breakdown of predictions read by ``widerface_eval.read_folder``, for ``widerface_eval.report``:
    {'events', 'recall_at_precision', 'misses_picture', 'lines'} (the log lines); writes ``misses.png`` into
    out_dir where image_path ((event, name) -> file) finds the images."""
    result = breakdown(preds, gt, precision, prepared)
    lines = format_breakdown(result, list(gt.keep))
    picture = None
    if out_dir and image_path is not None:
        picture = misses_picture(result, preds, gt, image_path, os.path.join(out_dir, 'misses.png'))
    return {'events': result['events'], 'recall_at_precision': result['recall_at_precision'],
            'misses_picture': picture, 'lines': lines}
