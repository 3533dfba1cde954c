"""WIDER FACE Easy/Medium/Hard AP, reproducing the official MATLAB toolkit (eval_tools, 2015).

    python -m rcnn.dataset.widerface_eval --pred out/mnet25 --gt data/widerface/ground_truth
    python -m rcnn.dataset.widerface_eval --pred out/demo --label data/retinaface/val/label.txt

Rules (see shared/spec/widerface_eval_protocol.md), each emulated exactly:
- prediction files ``<pred>/<event>/<image>.txt``: line 1 ignored, line 2 = N, then exactly N lines of
  >= 5 numbers (x y w h score; spaces, tabs or commas); a missing file = no predictions; any parse
  error (fewer lines, < 5 numbers, empty file, blank line, bad N) drops the image's predictions;
- each image's boxes sorted by score, descending, stable (NaN first, as MATLAB's sort);
- scores normalised globally to [0, 1] with min/max starting from realmax/realmin('single');
- matching in score order against *all* GT boxes with the int32 arithmetic of boxoverlap.m for the
  int32 .mat ground truth (corners rounded, union rounded, IoU rounded, so the *first* GT whose
  inter / union >= 0.5 wins); a match to an ignored face removes the prediction from the proposals;
  a duplicate match to a counted face is a false positive;
- 1000 thresholds 1 - t/1000; per image the last sorted box with score >= threshold;
- count_face counts gt_list faces of every evaluated image, predictions or not;
- AP = VOC all-point interpolation with MATLAB's NaN-ignoring max.
"""
import argparse
import json
import logging
import os
import re
import sys
import tempfile

import numpy as np

from rcnn.fileio import UnsafeOutputError, atomic_open, atomic_path, refuse_symlink
from rcnn.cli import HelpFormatter

__all__ = ['GroundTruth', 'load_mat_gt', 'load_label_gt', 'read_pred_file', 'read_predictions', 'read_folder',
           'prepare', 'evaluate', 'evaluate_folder', 'voc_ap', 'SETTINGS', 'main']
logger = logging.getLogger(__name__)
SETTINGS = ('easy', 'medium', 'hard')
IOU_THRESH = 0.5
THRESH_NUM = 1000
SINGLE_REALMIN = float(np.finfo(np.float32).tiny)  # realmin('single')
SINGLE_REALMAX = float(np.finfo(np.float32).max)   # realmax('single')
_INT32_MIN, _INT32_MAX = -2 ** 31, 2 ** 31 - 1


class GroundTruth:
    """Evaluation ground truth.

    images: list of (event, name) in evaluation order (name without .jpg);
    boxes: list of (G, 4) x, y, w, h arrays (int32 for the official .mat, float otherwise);
    keep: {setting: list of index arrays (0-based) of the faces that count}.
    """

    def __init__(self, images, boxes, keep, source):
        self.images, self.boxes, self.keep, self.source = images, boxes, keep, source

    def subset(self, wanted):
        """Only the images in `wanted` (set of (event, name)), in the same order."""
        idx = [i for i, key in enumerate(self.images) if key in wanted]
        return GroundTruth([self.images[i] for i in idx], [self.boxes[i] for i in idx],
                           {k: [v[i] for i in idx] for k, v in self.keep.items()}, self.source)


def _cellstr(x):
    return str(np.asarray(x).ravel()[0])


def load_mat_gt(gt_dir):
    """The official wider_face_val.mat + wider_{easy,medium,hard}_val.mat from a folder."""
    from scipy.io import loadmat
    paths = {s: os.path.join(gt_dir, 'wider_%s_val.mat' % s) for s in SETTINGS}
    for p in paths.values():
        if not os.path.isfile(p):
            raise FileNotFoundError('ground truth file not found: %s (expected the official wider_easy_val.mat, '
                                    'wider_medium_val.mat and wider_hard_val.mat in %s)' % (p, gt_dir))
    mats = {}
    for s, p in paths.items():
        try:
            mats[s] = loadmat(p)
        except Exception as err:  # scipy raises several types for truncated or foreign files
            raise ValueError('cannot read ground truth %s (truncated, or not a MATLAB .mat file): %s'
                             % (p, str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__)) \
                from None
        missing = [k for k in ('event_list', 'file_list', 'face_bbx_list', 'gt_list') if k not in mats[s]]
        if missing:
            raise ValueError('ground truth %s has no %s: not the official WIDER FACE val ground truth'
                             % (p, ', '.join(missing)))
    m = mats['hard']
    images, boxes = [], []
    keep = {s: [] for s in SETTINGS}
    try:
        for e in range(m['event_list'].shape[0]):
            event = _cellstr(m['event_list'][e, 0])
            files = m['file_list'][e, 0]
            for j in range(files.shape[0]):
                images.append((event, _cellstr(files[j, 0])))
                boxes.append(np.asarray(m['face_bbx_list'][e, 0][j, 0], dtype=np.int32).reshape(-1, 4))
                for s in SETTINGS:
                    k = np.asarray(mats[s]['gt_list'][e, 0][j, 0]).ravel().astype(np.int64) - 1
                    keep[s].append(k)
    except (IndexError, ValueError, TypeError, AttributeError) as err:
        raise ValueError('ground truth in %s does not have the official layout (event %d): %s'
                         % (gt_dir, e, err)) from None
    counts = {s: sum(len(k) for k in keep[s]) for s in SETTINGS}
    for easier, harder in zip(SETTINGS, SETTINGS[1:]):  # each setting counts a superset of the easier one's faces
        if counts[easier] > counts[harder]:
            raise ValueError('ground truth %s counts %d faces but %s only %d: the files are swapped or renamed (Easy '
                             'must count the fewest faces, Hard the most)' % (paths[easier], counts[easier],
                                                                              paths[harder], counts[harder]))
    return GroundTruth(images, boxes, keep, gt_dir)


def load_label_gt(label_path):
    """Ground truth from a RetinaFace label.txt: every face counts (one setting, 'all').

    Integer-valued boxes use the official int32 arithmetic; fractional ones exact IoU. Boxes without
    area (the ``0 0 0 0`` line that marks an image without faces) are not faces and are left out.
    """
    from rcnn.dataset.retinaface import parse_label_file
    records = parse_label_file(label_path, with_landmarks=False)
    images, boxes = [], []
    for rec in records:
        event, name = os.path.split(os.path.splitext(rec['path'])[0])
        images.append((os.path.basename(event) if event else '', name))
        b = rec['boxes_xywh']
        b = b[(b[:, 2] > 0) & (b[:, 3] > 0)]
        boxes.append(b.astype(np.int32) if b.size and np.all(b == np.round(b)) else b)
    keep = {'all': [np.arange(len(b)) for b in boxes]}
    return GroundTruth(images, boxes, keep, label_path)


# ----------------------------------------------------------------------------------------------------
_SPLIT = re.compile(r'[\s,]+')


def _str2num(line):
    """Numbers of a line as MATLAB's str2num reads a numeric row; None when it cannot."""
    tokens = [t for t in _SPLIT.split(line.strip()) if t]
    if not tokens:
        return None
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def read_pred_file(path):
    """(boxes (N, 5) float64 sorted as the toolkit sorts, problem or None). Missing file -> (empty, 'missing')."""
    empty = np.zeros((0, 5))
    if not os.path.isfile(path):
        return empty, 'missing'
    with open(path, 'r', errors='replace') as f:
        lines = f.read().splitlines()
    if len(lines) < 2:
        return empty, 'has no count line (%s)' % ('empty file' if not lines else 'one line')
    n = _str2num(lines[1])
    if n is None or len(n) != 1 or n[0] != int(n[0]):
        return empty, 'line 2 is not a box count: %r' % lines[1][:40]
    n = int(n[0])
    if n < 0:
        return empty, 'negative box count %d: no detections (the toolkit reads no box line)' % n
    if n == 0:
        return empty, None
    if len(lines) - 2 < n:
        return empty, 'count line says %d boxes but %d lines follow' % (n, len(lines) - 2)
    rows = []
    for k in range(n):
        vals = _str2num(lines[k + 2])
        if vals is None or len(vals) < 5:
            return empty, 'line %d has fewer than 5 numbers: %r' % (k + 3, lines[k + 2][:60])
        rows.append(vals[:5])
    det = np.asarray(rows, dtype=np.float64)
    notes = []
    extra = sum(1 for line in lines[n + 2:] if line.strip())
    if extra:
        notes.append('count line says %d boxes but %d more box lines follow: only the first %d are read, as the '
                     'toolkit does' % (n, extra, n))
    if np.isnan(det[:, 4]).any():
        notes.append('%d NaN scores (sorted first and never above a threshold, as MATLAB does)'
                     % int(np.isnan(det[:, 4]).sum()))
    if np.isinf(det[:, 4]).any():
        notes.append('%d infinite scores: the toolkit normalises all scores by the global max and min, so the '
                     'scores of every other box become 0 (or NaN)' % int(np.isinf(det[:, 4]).sum()))
    if (det[:, 2:4] < 0).any():
        notes.append('%d boxes with negative width or height: their IoU is 0 under the toolkit\'s rules'
                     % int((det[:, 2:4] < 0).any(axis=1).sum()))
    problem = '; '.join(notes) or None
    # MATLAB sort(..., 'descend') is stable and puts NaN first
    key = np.where(np.isnan(det[:, 4]), -np.inf, -det[:, 4])
    order = np.argsort(key, kind='stable')
    nan_first = np.concatenate([order[np.isnan(det[order, 4])], order[~np.isnan(det[order, 4])]])
    return det[nan_first], problem


def read_predictions(pred_dir, gt):
    """List of (N, 5) arrays aligned with gt.images, plus a list of (path, problem) warnings."""
    preds, problems = [], []
    for event, name in gt.images:
        path = os.path.join(pred_dir, event, name + '.txt')
        det, problem = read_pred_file(path)
        preds.append(det)
        if problem:
            problems.append((path, problem))
    return preds, problems


def normalise_scores(preds):
    max_s, min_s = SINGLE_REALMIN, SINGLE_REALMAX
    for det in preds:
        s = det[:, 4][~np.isnan(det[:, 4])]
        if s.size:
            max_s, min_s = max(max_s, s.max()), min(min_s, s.min())
    if max_s == min_s and any(len(det) for det in preds):
        logger.warning('every prediction has the same score (%g): the toolkit\'s normalisation (s - min) / (max - min) '
                       'makes them all NaN and the AP 0; write real confidence scores', max_s)
    out = []
    for det in preds:
        d = det.copy()
        with np.errstate(invalid='ignore'):  # inf scores: warned per file by read_pred_file
            d[:, 4] = (d[:, 4] - min_s) / (max_s - min_s) if max_s != min_s else np.nan
        out.append(d)
    return out


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _to_int32(x):
    """MATLAB conversion of doubles to int32: round half away from zero, saturate; NaN -> 0."""
    r = _round_half_away(np.nan_to_num(x, nan=0.0, posinf=_INT32_MAX, neginf=_INT32_MIN))
    return np.clip(r, _INT32_MIN, _INT32_MAX)


def _match_int32(pred, gt):
    """(P, G) bool: IoU passes 0.5 under boxoverlap.m's int32 arithmetic (int32 GT, double predictions)."""
    gx1, gy1 = gt[:, 0].astype(np.float64), gt[:, 1].astype(np.float64)
    gx2, gy2 = gx1 + gt[:, 2], gy1 + gt[:, 3]  # x + w in int32 (exact for image coordinates)
    px1, py1 = pred[:, 0:1], pred[:, 1:2]
    px2, py2 = pred[:, 0:1] + pred[:, 2:3], pred[:, 1:2] + pred[:, 3:4]
    x1 = _to_int32(np.maximum(gx1[None], px1))
    y1 = _to_int32(np.maximum(gy1[None], py1))
    x2 = _to_int32(np.minimum(gx2[None], px2))
    y2 = _to_int32(np.minimum(gy2[None], py2))
    w = _to_int32(x2 - x1 + 1)
    h = _to_int32(y2 - y1 + 1)
    inter = _to_int32(w * h)
    garea = _to_int32((gx2 - gx1 + 1) * (gy2 - gy1 + 1))[None]
    parea = (px2 - px1 + 1) * (py2 - py1 + 1)                   # double: b is the prediction
    union = _to_int32(_to_int32(garea + parea) - inter)
    with np.errstate(divide='ignore', invalid='ignore'):
        ratio = inter / union                             # MATLAB int32: x / 0 saturates, 0 / 0 = 0
    ratio[(union == 0) & (inter == 0)] = 0.0
    o = _to_int32(ratio)
    o[(w <= 0) | (h <= 0)] = 0
    return o >= IOU_THRESH  # o is an integer: passes iff it rounds to >= 1


def _best_double(pred, gt):
    """(P,) index of the first GT with the highest double IoU when it is >= 0.5, else -1."""
    g = gt.astype(np.float64)
    gx2, gy2 = g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    px2, py2 = pred[:, 0:1] + pred[:, 2:3], pred[:, 1:2] + pred[:, 3:4]
    w = np.minimum(gx2[None], px2) - np.maximum(g[None, :, 0], pred[:, 0:1]) + 1
    h = np.minimum(gy2[None], py2) - np.maximum(g[None, :, 1], pred[:, 1:2]) + 1
    inter = w * h
    union = (g[:, 2] + 1) * (g[:, 3] + 1) + (px2 - pred[:, 0:1] + 1) * (py2 - pred[:, 1:2] + 1) - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        o = inter / union
    o[(w <= 0) | (h <= 0)] = 0
    o = np.nan_to_num(o, nan=-np.inf)
    best = o.argmax(axis=1)
    return np.where(o[np.arange(len(o)), best] >= IOU_THRESH, best, -1)


def match_predictions(pred, gt):
    """(P,) GT index each prediction (in score order) matches at IoU >= 0.5, or -1.

    int32 ground truth: the first GT that passes under boxoverlap.m's int32 arithmetic;
    float ground truth: the first GT of highest IoU (MATLAB max on doubles).
    """
    if np.issubdtype(gt.dtype, np.integer):
        passes = _match_int32(pred, gt)
        return np.where(passes.any(axis=1), passes.argmax(axis=1), -1)
    return _best_double(pred, gt)


def image_evaluation(pred, gt, counted, idx=None):
    """Per prediction (score order): (pred_recall cumulative counted faces found, proposal flag 1/-1)."""
    if idx is None:
        idx = match_predictions(pred, gt)
    is_counted = np.zeros(len(gt), dtype=bool)
    is_counted[counted] = True
    matched = idx >= 0
    proposal = np.ones(len(pred), dtype=np.int64)
    proposal[matched & ~is_counted[np.maximum(idx, 0)]] = -1
    hit = matched & is_counted[np.maximum(idx, 0)]
    first = np.zeros(len(pred), dtype=bool)
    if hit.any():
        _, first_pos = np.unique(idx[hit], return_index=True)
        first[np.flatnonzero(hit)[first_pos]] = True
    return np.cumsum(first), proposal


def _thresholds():
    t = np.arange(1, THRESH_NUM + 1, dtype=np.float64)
    return 1 - t / THRESH_NUM


def pr_curve(preds, gt, setting, matches=None):
    """(precision (1000,), recall (1000,), count_face) of one setting over normalised predictions.

    matches: optional per-image output of ``match_predictions`` (it does not depend on the setting).
    """
    thr = _thresholds()
    proposals = np.zeros(THRESH_NUM)
    tps = np.zeros(THRESH_NUM)
    count_face = 0
    for i, (det, boxes, counted) in enumerate(zip(preds, gt.boxes, gt.keep[setting])):
        count_face += len(counted)
        if len(boxes) == 0 or len(det) == 0:
            continue
        pred_recall, proposal = image_evaluation(det, boxes, counted, None if matches is None else matches[i])
        scores = det[:, 4]
        n_nan = int(np.isnan(scores).sum())                      # NaN scores sit first (MATLAB sort)
        valid = scores[n_nan:]                                   # descending, no NaN
        c = np.searchsorted(-valid, -thr, side='right')          # non-NaN scores >= thr
        r = np.where(c > 0, n_nan + c, 0)                        # last index with score >= thr (1-based)
        cum_prop = np.concatenate(([0], np.cumsum(proposal == 1)))
        cum_tp = np.concatenate(([0], pred_recall))
        proposals += cum_prop[r]
        tps += cum_tp[r]
    with np.errstate(divide='ignore', invalid='ignore'):
        precision = tps / proposals
        recall = tps / count_face if count_face else np.full(THRESH_NUM, np.nan)
    return precision, recall, count_face


def voc_ap(recall, precision):
    """VOCap.m: all-point interpolation; MATLAB max ignores NaN."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        a, b = mpre[i], mpre[i + 1]
        mpre[i] = b if np.isnan(a) else a if np.isnan(b) else max(a, b)
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def prepare(preds, gt):
    """(normalised predictions, per-image matches) of raw sorted predictions: what the AP and its breakdown share.
    A match list entry is None for an image without predictions or without faces."""
    norm = normalise_scores(preds)
    return norm, [match_predictions(d, b) if len(d) and len(b) else None for d, b in zip(norm, gt.boxes)]


def evaluate(preds, gt, prepared=None):
    """{setting: {'ap', 'precision', 'recall', 'faces'}} for raw (unnormalised) sorted predictions.

    prepared: ``prepare(preds, gt)`` where the caller has it already."""
    norm, matches = prepared or prepare(preds, gt)
    results = {}
    for setting in gt.keep:
        precision, recall, faces = pr_curve(norm, gt, setting, matches)
        results[setting] = {'ap': voc_ap(recall, precision), 'precision': precision, 'recall': recall,
                            'faces': faces}
    return results


def read_folder(pred_dir, gt, subset=None):
    """Read and warn: (predictions aligned with the ground truth's images, that ground truth, problems).
    subset: iterable of (event, name) to restrict to, or None for all."""
    if not os.path.isdir(pred_dir):
        raise FileNotFoundError('prediction folder not found: %s' % pred_dir)
    if subset is not None:
        gt = gt.subset(set(subset))
        if not gt.images:
            raise ValueError('no prediction file in %s matches an image of the ground truth %s: nothing to evaluate '
                             '(wrong --pred folder, or results of another split?)' % (pred_dir, gt.source))
    preds, problems = read_predictions(pred_dir, gt)
    missing = [p for p, why in problems if why == 'missing']
    if missing:
        logger.warning('%d of %d images have no prediction file (counted as no detections), e.g. %s',
                       len(missing), len(gt.images), missing[0])
    for path, why in problems:
        if why != 'missing':
            logger.warning('%s: %s', path, why)
    return preds, gt, problems


def evaluate_folder(pred_dir, gt, subset=None):
    """Read, warn and evaluate: (results, ground truth evaluated on, problems)."""
    preds, gt, problems = read_folder(pred_dir, gt, subset)
    return evaluate(preds, gt), gt, problems


def present_images(pred_dir, gt):
    """(event, name) of the GT images that have a prediction file."""
    return [k for k in gt.images if os.path.isfile(os.path.join(pred_dir, k[0], k[1] + '.txt'))]


def report(results, gt, out_dir=None, title='', run=None, extra=None):
    """Print the AP table; write ap.json (with `run`, the settings the results were made with, and `extra`, the
    breakdown of ``rcnn.dataset.breakdown.explain``) and pr_curves.png into out_dir when given."""
    n_images = len(gt.images)
    boxes = sum(len(b) for b in gt.boxes)
    if list(results) == ['all']:
        counted = 'all %d faces' % results['all']['faces']
    else:
        counted = '%d ground-truth boxes; counted: %s (the others are ignored: a detection on them neither counts ' \
                  'nor costs)' % (boxes, ', '.join('%s %d' % (s, r['faces']) for s, r in results.items()))
    lines = ['%s%d images, %s' % (title + ': ' if title else '', n_images, counted)]
    lines.append('  '.join('%s %.4f' % (s.capitalize(), r['ap']) for s, r in results.items()))
    lines += (extra or {}).get('lines', [])
    for line in lines:
        logger.info(line)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        summary = {'images': n_images, 'ground_truth': gt.source,
                   'ap': {s: r['ap'] for s, r in results.items()},
                   'faces': {s: r['faces'] for s, r in results.items()}}
        if run is not None:
            summary['run'] = run
        if title:
            summary['title'] = title
        summary.update({k: v for k, v in (extra or {}).items() if k != 'lines'})
        ap_path = os.path.join(out_dir, 'ap.json')
        with atomic_open(ap_path, what='AP summary') as f:
            json.dump(summary, f, indent=1)
        plot = plot_pr_curves(results, os.path.join(out_dir, 'pr_curves.png'), title)
        written = [ap_path] + [p for p in (plot, (extra or {}).get('misses_picture')) if p]
        logger.info('written: %s', ', '.join(written))
    return lines


def plot_pr_curves(results, path, title=''):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning('matplotlib is not installed: no PR-curve plot written (pip install matplotlib)')
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, (setting, r) in zip(axes[0], results.items()):
        ax.plot(r['recall'], r['precision'], lw=2)
        ax.set_title('%s  AP %.3f' % (setting.capitalize(), r['ap']))
        ax.set_xlabel('recall')
        ax.set_ylabel('precision')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, 'PR-curve plot') as tmp:
        fig.savefig(tmp, dpi=100, format='png')
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description='WIDER FACE AP of prediction files (official toolkit rules).',
                                     formatter_class=HelpFormatter)
    parser.add_argument('--pred', required=True, help='folder of <event>/<image>.txt prediction files')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--gt', help='folder with the official wider_{easy,medium,hard}_val.mat')
    src.add_argument('--label', help='RetinaFace label.txt to use as ground truth (all faces count)')
    parser.add_argument('--subset', action='store_true',
                        help='evaluate only the images that have a prediction file (a partial run); '
                             'otherwise missing files count as images without detections, as the toolkit does')
    parser.add_argument('--output', default=None, help='folder for ap.json and pr_curves.png (default: --pred)')
    parser.add_argument('--images', default=None,
                        help='folder of the images (<event>/<image>.jpg, as WIDER_val/images): adds misses.png, the '
                             'worst misses and strongest false positives')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an ap.json / pr_curves.png already in the output folder (test.py writes them)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stdout)
    if not os.path.isdir(args.pred):
        parser.exit(2, 'error: prediction folder not found: %s\n' % args.pred)
    out_dir = args.output or args.pred
    try:  # before any work: the results must have somewhere to go
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        parser.exit(2, 'error: cannot write ap.json and pr_curves.png to --output %s: %s\n' % (out_dir, err.strerror))
    present = [p for p in (os.path.join(out_dir, n) for n in ('ap.json', 'pr_curves.png', 'misses.png'))
               if os.path.lexists(p)]
    for path in present:
        try:
            refuse_symlink(path, 'AP output')
        except UnsafeOutputError as err:
            parser.exit(2, 'error: %s\n' % err)
    if present and not args.overwrite:
        parser.exit(2, 'error: %s already exists (written by test.py or an earlier evaluation): --overwrite replaces '
                       'it, or --output names another folder\n' % present[0])
    try:
        gt = load_mat_gt(args.gt) if args.gt else load_label_gt(args.label)
        subset = present_images(args.pred, gt) if args.subset and os.path.isdir(args.pred) else None
        if subset is None:
            have = len(present_images(args.pred, gt))
            if have < len(gt.images):
                logger.warning('note: %d of the %d ground-truth images have a prediction file; the %d others count '
                               'as images without detections (the official rule for a full submission). To score '
                               'only the %d predicted images, add --subset.', have, len(gt.images),
                               len(gt.images) - have, have)
        total = len(gt.images)
        preds, gt, _ = read_folder(args.pred, gt, subset)
        prepared = prepare(preds, gt)
        results = evaluate(preds, gt, prepared)
        title = ('subset: %d of the %d images' % (len(gt.images), total)) if subset is not None else ''
        from rcnn.dataset import breakdown  # (it builds on this module)
        extra = breakdown.explain(preds, gt, prepared, out_dir, None if args.images is None else
                                  (lambda key: os.path.join(args.images, key[0], key[1] + '.jpg')))
        report(results, gt, out_dir, title=title, extra=extra)
    except (OSError, ValueError) as err:
        parser.exit(2, 'error: %s\n' % err)
    return 0


if __name__ == '__main__':
    sys.exit(main())
