"""Training image pipeline: read, mirror, random square crop at a random scale, colour jitter, tensor.

The recipe of the original (training.md section 3), with two deliberate fixes: the grey used by
contrast/saturation jitter weights B, G, R as 0.114, 0.587, 0.299 (the original applied RGB weights to
BGR data), and jittered pixels are clipped to 0..255.
"""
import cv2
import numpy as np

__all__ = ['load_image', 'random_crop', 'color_jitter', 'to_tensor', 'get_crop_image']
GRAY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def load_image(rec):
    """BGR uint8 image of a roidb record, mirrored when the record is a flipped twin.

    An image that became unreadable or truncated after the roidb was built raises AnnotationError naming
    the label line of the image.
    """
    from rcnn.dataset.retinaface import AnnotationError, read_training_image
    try:
        img = read_training_image(rec['image'])
    except ValueError as err:
        where = rec.get('where', rec['image'])
        raise AnnotationError('%s: %s (changed since the roidb cache was built?)' % (where, err)) from None
    return img[:, ::-1] if rec.get('flipped') else img


def random_crop(img, boxes, landmarks, size, crop_scales, tries, rng, min_box_size=0):
    """Square crop of side `size` covering a random fraction of the short side.

    :param img: (H, W, 3) BGR
    :param boxes: (G, 4) x1, y1, x2, y2; landmarks (G, 5, 3) x, y, flag
    :param crop_scales: fractions of the short side the crop covers (one picked uniformly)
    :return: crop (size, size, 3), boxes (K, 4), landmarks (K, 5, 3), im_scale; faces kept are those whose
             box centre lies inside the crop (boxes are not clipped); after `tries` attempts without a face the
             last crop is accepted as is
    """
    h, w = img.shape[:2]
    frac = crop_scales[rng.randint(len(crop_scales))]
    side = max(1, int(min(h, w) * frac))
    im_scale = float(size) / side
    resized = cv2.resize(img, None, None, fx=im_scale, fy=im_scale, interpolation=cv2.INTER_LINEAR)
    rh, rw = resized.shape[:2]
    if rh < size or rw < size:  # rounding of the resize: pad to at least the crop size
        padded = np.zeros((max(rh, size), max(rw, size), 3), dtype=resized.dtype)
        padded[:rh, :rw] = resized
        resized, (rh, rw) = padded, padded.shape[:2]
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
            return resized[up:up + size, left:left + size], cb[keep], lm, im_scale
    raise AssertionError('unreachable')


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


def get_crop_image(rec, cfg, rng):
    """One training sample: (tensor (3, S, S), boxes (K, 4), landmarks (K, 5, 3))."""
    img = load_image(rec)
    crop, boxes, landmarks, _ = random_crop(img, rec['boxes'].astype(np.float32), rec['landmarks'],
                                            cfg.IMAGE_SIZE, cfg.CROP_SCALES, cfg.CROP_TRIES, rng,
                                            cfg.TRAIN.MIN_BOX_SIZE)
    crop = color_jitter(crop, cfg.COLOR_MODE, cfg.COLOR_JITTERING, rng)
    return to_tensor(crop, cfg.PIXEL_MEANS, cfg.PIXEL_STDS, cfg.PIXEL_SCALE), boxes, landmarks
