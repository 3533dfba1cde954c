"""Training image pipeline: read, mirror, random square crop at a random scale, colour jitter, tensor.

Only the source pixels a crop needs are resized (``resize_crop``, bit-identical to cutting the crop out of the
whole resized image), and jitter, normalisation and the channel transpose are one pass (``crop_to_tensor``).

The recipe of the original (training.md section 3), with two deliberate fixes: the grey used by
contrast/saturation jitter weights B, G, R as 0.114, 0.587, 0.299 (the original applied RGB weights to
BGR data), and jittered pixels are clipped to 0..255.
"""
import collections
import math

import cv2
import numpy as np

from rcnn.imageio import AnnotationError, read_image

__all__ = ['load_image', 'CropWindow', 'crop_window', 'resize_crop', 'random_crop', 'color_jitter', 'to_tensor',
           'crop_to_tensor', 'get_crop_image']
GRAY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def load_image(rec):
    """BGR uint8 image of a roidb record, mirrored when the record is a flipped twin.

    An image that became unreadable or truncated after the roidb was built raises AnnotationError naming
    the label line of the image.
    """
    try:
        img = read_image(rec['image'])
    except ValueError as err:
        where = rec.get('where', rec['image'])
        raise AnnotationError('%s: %s (changed since the roidb cache was built?)' % (where, err)) from None
    if img.shape[1] != rec['width'] or img.shape[0] != rec['height']:  # its boxes and flip are of that size
        raise AnnotationError('%s: %s is %dx%d now, %dx%d when its boxes were read: the image was replaced '
                              'during training; restart (the roidb is rebuilt for changed images)'
                              % (rec.get('where', rec['image']), rec['image'], img.shape[1], img.shape[0],
                                 rec['width'], rec['height']))
    return cv2.flip(img, 1) if rec.get('flipped') else img  # contiguous mirror (same pixels as img[:, ::-1])


CropWindow = collections.namedtuple('CropWindow', 'scale side up left valid boxes landmarks')


def crop_window(shape, boxes, landmarks, size, crop_scales, tries, rng, min_box_size=0):
    """The random part of a square training crop: scale, position and the faces it keeps.

    The crop covers `side` = a random fraction (one of `crop_scales`) of the short side and is `size`
    pixels wide once the image is scaled by ``scale = size / side``; (up, left) is its corner in scaled
    pixels, drawn uniformly. Faces kept are those whose box centre lies inside the crop (boxes are not
    clipped); after `tries` attempts without a face the last crop is accepted as is.

    :param shape: (H, W, ...) of the image
    :param boxes: (G, 4) x1, y1, x2, y2; landmarks (G, 5, 3) x, y, flag
    :return: CropWindow(scale, side, up, left, valid (h, w) of the scaled image, boxes (K, 4), landmarks
             (K, 5, 3)), boxes and landmarks in crop pixels
    """
    h, w = shape[:2]
    frac = crop_scales[rng.randint(len(crop_scales))]
    side = max(1, int(min(h, w) * frac))
    im_scale = float(size) / side
    valid = (round(h * im_scale), round(w * im_scale))  # the size cv2.resize gives for fx = fy = im_scale
    rh, rw = max(valid[0], size), max(valid[1], size)   # rounding: zero padding up to the crop size
    sboxes = boxes * im_scale
    slm = landmarks.copy()
    slm[:, :, :2] *= im_scale
    for attempt in range(tries):
        up = rng.randint(0, rh - size + 1)
        left = rng.randint(0, rw - size + 1)
        cb = sboxes - np.array([left, up, left, up], dtype=sboxes.dtype)
        cx, cy = (cb[:, 0] + cb[:, 2]) / 2, (cb[:, 1] + cb[:, 3]) / 2
        keep = (cx >= 0) & (cx < size) & (cy >= 0) & (cy < size)
        if min_box_size > 0:
            keep &= np.maximum(cb[:, 2] - cb[:, 0], cb[:, 3] - cb[:, 1]) >= min_box_size  # label w, h (scaled)
        if keep.any() or attempt == tries - 1:
            lm = slm[keep].copy()
            lm[:, :, 0] -= left
            lm[:, :, 1] -= up
            return CropWindow(im_scale, side, up, left, valid, cb[keep], lm)
    raise AssertionError('unreachable')


def _source_span(offset, length, size, side, scale):
    """Source rows (columns) [start, stop) whose resize holds scaled pixels offset .. offset + size - 1 at the
    same sample positions as the whole image's resize, and where those pixels start in it.

    cv2.resize maps destination pixel d to source (d + 0.5) / scale - 0.5. A source window starting at x0
    reproduces the whole image's samples when x0 * scale is an integer, i.e. x0 a multiple of side / gcd:
    the largest such x0 that leaves a few source pixels before the crop (so that no sample is clamped at
    the window's edge) is taken, and the window ends a few pixels after the last sample (or at the image).
    """
    g = math.gcd(size, side)
    step_src, step_dst = side // g, size // g  # scale = step_dst / step_src exactly
    margin = int(math.ceil(scale)) + 2
    k = max(0, (offset - margin) // step_dst)
    last = (offset + size - 1 + 0.5) / scale - 0.5
    stop = min(length, int(math.floor(last)) + 3)
    return k * step_src, stop, offset - k * step_dst


def resize_crop(img, window, size):
    """The crop's pixels (uint8 BGR (size, size, 3)): exactly those of resizing the whole image by the window's
    scale (cv2.resize, bilinear) and cutting (up, left) -- computed from the source rows and columns the
    crop needs only; zero past the scaled image (a rounding pad)."""
    h, w = img.shape[:2]
    y0, y1, oy = _source_span(window.up, h, size, window.side, window.scale)
    x0, x1, ox = _source_span(window.left, w, size, window.side, window.scale)
    part = cv2.resize(img[y0:y1, x0:x1], None, None, fx=window.scale, fy=window.scale, interpolation=cv2.INTER_LINEAR)
    crop = part[oy:oy + size, ox:ox + size]
    if crop.shape[:2] != (size, size):  # the scaled image is smaller than the crop (rounding): zero pad
        padded = np.zeros((size, size, 3), dtype=img.dtype)
        padded[:crop.shape[0], :crop.shape[1]] = crop
        crop = padded
    return crop


def random_crop(img, boxes, landmarks, size, crop_scales, tries, rng, min_box_size=0):
    """Square crop of side `size` (``crop_window`` + ``resize_crop``): (crop, boxes (K, 4), landmarks (K, 5, 3),
    im_scale)."""
    window = crop_window(img.shape, boxes, landmarks, size, crop_scales, tries, rng, min_box_size)
    return resize_crop(img, window, size), window.boxes, window.landmarks, window.scale


def color_jitter(img, mode, amount, rng):
    """Float32 BGR jitter: mode 1 brightness; mode >= 2 brightness, contrast and saturation in random
    order; each with alpha = 1 + U(-amount, amount); clipped to 0..255."""
    img = img.astype(np.float32)
    if mode <= 0 or amount <= 0:
        return img
    ops = ['brightness'] if mode == 1 else list(rng.permutation(['brightness', 'contrast', 'saturation']))
    for op in ops:
        alpha = 1.0 + rng.uniform(-amount, amount)
        if op == 'brightness':
            img *= alpha
        else:
            gray = img @ GRAY_WEIGHTS_BGR
            mix = gray.mean() if op == 'contrast' else gray[:, :, None]
            img = alpha * img + (1 - alpha) * mix
    return np.clip(img, 0, 255, out=img)


def to_tensor(img, means=(0.0, 0.0, 0.0), stds=(1.0, 1.0, 1.0), scale=1.0):
    """(H, W, 3) BGR -> (3, H, W) float32 RGB, (v / scale - mean) / std with BGR-ordered mean/std."""
    x = img.astype(np.float32) / scale
    x = (x - np.asarray(means, np.float32)) / np.asarray(stds, np.float32)
    return np.ascontiguousarray(x[:, :, ::-1].transpose(2, 0, 1))


def crop_to_tensor(crop, cfg, rng, out=None):
    """(S, S, 3) uint8 BGR crop -> (3, S, S) float32 RGB in `out`: colour jitter, clipping, normalisation and the
    channel transpose in one pass over each plane.

    Bit-identical to ``to_tensor(color_jitter(crop, ...), ...)`` with the same random draws; COLOR_MODE >= 2
    (contrast and saturation mix the channels) takes that general path.
    """
    if out is None:
        out = np.empty((3,) + crop.shape[:2], dtype=np.float32)
    mode, amount = cfg.COLOR_MODE, cfg.COLOR_JITTERING
    means, stds, scale = cfg.PIXEL_MEANS, cfg.PIXEL_STDS, cfg.PIXEL_SCALE
    if mode >= 2 and amount > 0:
        out[:] = to_tensor(color_jitter(crop, mode, amount, rng), means, stds, scale)
        return out
    alpha = 1.0 + rng.uniform(-amount, amount) if mode == 1 and amount > 0 else None
    planes = cv2.split(crop)
    for c in range(3):  # RGB plane c is BGR channel 2 - c
        dst = out[c]
        if alpha is None:
            np.copyto(dst, planes[2 - c], casting='unsafe')
        else:  # uint8 -> float32 and the float32 product in one pass, as float32(x) * float32(alpha)
            np.multiply(planes[2 - c], np.float32(alpha), out=dst)
            np.clip(dst, 0, 255, out=dst)
        if scale != 1:
            dst /= scale
        if means[2 - c] != 0:
            dst -= np.float32(means[2 - c])
        if stds[2 - c] != 1:
            dst /= np.float32(stds[2 - c])
    return out


def get_crop_image(rec, cfg, rng, out=None):
    """One training sample: (tensor (3, S, S) float32, written into `out` when given, boxes (K, 4),
    landmarks (K, 5, 3))."""
    img = load_image(rec)
    crop, boxes, landmarks, _ = random_crop(img, rec['boxes'].astype(np.float32), rec['landmarks'],
                                            cfg.IMAGE_SIZE, cfg.CROP_SCALES, cfg.CROP_TRIES, rng,
                                            cfg.TRAIN.MIN_BOX_SIZE)
    return crop_to_tensor(crop, cfg, rng, out), boxes, landmarks
