"""Anchors: base windows per stride and planes over a feature map. The presets they are built from live in
rcnn/presets.py (``anchor_config`` is re-exported here for the callers that know it from here).

Box convention everywhere: inclusive pixels, w = x2 - x1 + 1, centre = x1 + 0.5 * (w - 1).
"""
import collections

import numpy as np

from rcnn.presets import NETWORK_PRESETS, TRAINABLE_PRESETS, anchor_config  # noqa: F401 (re-exported)

try:
    from rcnn.cython.anchors import anchors_cython
except ImportError:  # kernels not built: the numpy twin below serves
    anchors_cython = None

__all__ = ['generate_anchors', 'anchors_plane', 'anchors_plane_py', 'anchor_config', 'NETWORK_PRESETS',
           'TRAINABLE_PRESETS', 'base_anchors_fpn', 'AnchorCache']


def _whctrs(anchor):
    w = anchor[2] - anchor[0] + 1
    h = anchor[3] - anchor[1] + 1
    return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)


def _mkanchors(ws, hs, x_ctr, y_ctr):
    ws = np.asarray(ws, dtype=np.float64)[:, None]
    hs = np.asarray(hs, dtype=np.float64)[:, None]
    return np.hstack((x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1),
                      x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)))


def generate_anchors(base_size=16, ratios=(0.5, 1.0, 2.0), scales=(8, 16, 32)):
    """Base anchors of one cell -> (len(ratios) * len(scales), 4) float32.

    The base window is (0, 0, base_size-1, base_size-1). For each ratio r (h/w, outer loop) the window
    area base_size**2 is kept with w = round(sqrt(area / r)), h = round(w * r) (numpy round, half to
    even); then each scale s (inner loop) multiplies w and h. All windows share the base centre
    ((base_size-1)/2, (base_size-1)/2), e.g. (7.5, 7.5) for 16.
    """
    base = np.array([0, 0, base_size - 1, base_size - 1], dtype=np.float64)
    w, h, x_ctr, y_ctr = _whctrs(base)
    size = w * h
    rows = []
    for r in ratios:
        ws = np.round(np.sqrt(size / r))
        hs = np.round(ws * r)
        ratio_anchor = _mkanchors([ws], [hs], x_ctr, y_ctr)[0]
        rw, rh, rx, ry = _whctrs(ratio_anchor)
        rows.append(_mkanchors(rw * np.asarray(scales, np.float64), rh * np.asarray(scales, np.float64), rx, ry))
    return np.vstack(rows).astype(np.float32)


def anchors_plane_py(height, width, stride, base_anchors):
    """Numpy twin of the Cython kernel: (height, width, A, 4) float32; row-major, A fastest.

    Cell (i, j) holds base_anchors + (j*stride, i*stride, j*stride, i*stride).
    """
    base = np.asarray(base_anchors, dtype=np.float32)
    sx = (np.arange(width, dtype=np.float32) * stride)[None, :, None]
    sy = (np.arange(height, dtype=np.float32) * stride)[:, None, None]
    shifts = np.stack(np.broadcast_arrays(sx, sy, sx, sy), axis=-1)  # (H, W, 1, 4)
    return (shifts + base[None, None, :, :]).astype(np.float32)


def anchors_plane(height, width, stride, base_anchors):
    """(height, width, A, 4) float32 anchors of a feature map; the Cython kernel when built."""
    base = np.ascontiguousarray(base_anchors, dtype=np.float32)
    if anchors_cython is not None:
        return anchors_cython(int(height), int(width), int(stride), base)
    return anchors_plane_py(height, width, stride, base)


def base_anchors_fpn(anchor_cfg, strides):
    """{stride: (A, 4) float32 base anchors} for every stride of an anchor config."""
    return {s: generate_anchors(anchor_cfg[s]['BASE_SIZE'], anchor_cfg[s]['RATIOS'], anchor_cfg[s]['SCALES'])
            for s in strides}


class AnchorCache:
    """Anchors per (stride, height, width), computed once and reused: (H*W*A, 4) float32.

    Bounded: the `max_planes` most recently used planes are kept (an evaluation at each image's own size
    meets a new size on almost every image; unbounded, 307 val images held about 1,100 planes and 600 MB).
    A plane costs well under a millisecond to recompute.
    """

    def __init__(self, anchor_cfg, strides, max_planes=64):
        self.base = base_anchors_fpn(anchor_cfg, strides)
        self.max_planes = max_planes
        self._planes = collections.OrderedDict()

    def get(self, stride, height, width):
        key = (stride, height, width)
        plane = self._planes.get(key)
        if plane is None:
            plane = anchors_plane(height, width, stride, self.base[stride]).reshape(-1, 4)
            self._planes[key] = plane
            while len(self._planes) > self.max_planes:
                self._planes.popitem(last=False)
        else:
            self._planes.move_to_end(key)
        return plane

    def __len__(self):
        return len(self._planes)
