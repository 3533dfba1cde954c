"""Cover faces so that they cannot be recovered: blur, pixelate or fill each face's box, enlarged by a margin.

Every method keeps no more of a face than a few numbers per box, so no deblurring can bring it back:
- ``pixelate``: the enlarged box is averaged into at most ``CELLS`` x ``CELLS`` blocks (each block one colour);
- ``blur``: the same few block averages, smoothly interpolated and blurred (looks like a blur; holds no more than
  the blocks do, unlike a Gaussian blur of the full-resolution face, which a deconvolution can partly undo);
- ``fill``: one flat colour (black).
Pixels outside the enlarged boxes are left exactly as they were.
"""
import cv2
import numpy as np

__all__ = ['METHODS', 'CELLS', 'MARGIN', 'enlarge', 'anonymize']
METHODS = ('blur', 'pixelate', 'fill')
CELLS = 4      # blocks across an enlarged box (pixelate, blur): the most a covered face keeps
MARGIN = 0.25  # each side of the box grows by this fraction of the box's width / height (hair, chin, ears)


def enlarge(boxes, shape, margin=MARGIN):
    """int (N, 4) x1, y1, x2, y2 (exclusive x2, y2) of the boxes grown by `margin` per side, clipped to the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    x1 = np.floor(boxes[:, 0] - margin * w)
    y1 = np.floor(boxes[:, 1] - margin * h)
    x2 = np.ceil(boxes[:, 2] + margin * w) + 1
    y2 = np.ceil(boxes[:, 3] + margin * h) + 1
    out = np.stack([np.clip(x1, 0, shape[1]), np.clip(y1, 0, shape[0]),
                    np.clip(x2, 0, shape[1]), np.clip(y2, 0, shape[0])], axis=1)
    return out.astype(np.int64)


def _cells(region):
    """The region averaged into at most CELLS x CELLS blocks (INTER_AREA: the mean of each block)."""
    h, w = region.shape[:2]
    return cv2.resize(region, (max(1, min(CELLS, w)), max(1, min(CELLS, h))), interpolation=cv2.INTER_AREA)


def anonymize(img, boxes, method='blur', margin=MARGIN):
    """A copy of the BGR image with each box (x1, y1, x2, y2, ...) grown by `margin` and covered by `method`."""
    if method not in METHODS:
        raise ValueError('method must be one of %s, got %r' % (', '.join(METHODS), method))
    if not 0.0 <= margin <= 2.0:
        raise ValueError('margin must lie in [0, 2] (a fraction of the box size per side), got %r' % margin)
    out = np.ascontiguousarray(img.copy())
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return out
    for x1, y1, x2, y2 in enlarge(boxes[:, :4], out.shape, margin):
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        h, w = region.shape[:2]
        if method == 'fill':
            region[:] = 0
            continue
        cells = _cells(region)
        if method == 'pixelate':
            region[:] = cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)
        else:
            smooth = cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)
            k = max(3, (min(w, h) // 3) | 1)  # odd kernel over a block and more: no block edges, no face shape left
            region[:] = cv2.GaussianBlur(smooth, (k, k), 0)
    return out
