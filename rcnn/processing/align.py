"""Five-point face alignment for recognition models (pure numpy).

The detector's five landmarks (left eye, right eye, nose, left and right mouth corner, image pixels) are
mapped onto a template by the least-squares similarity transform (rotation, uniform scale, translation;
Umeyama 1991, with reflections excluded). ``ARCFACE_112`` is the template of the ArcFace 112x112 crops;
``template(size)`` scales it to a square crop of another side.
"""
import numpy as np

__all__ = ['ARCFACE_112', 'template', 'similarity_transform', 'apply_transform']

ARCFACE_112 = np.array([[38.2946, 51.6963],   # left eye
                        [73.5318, 51.5014],   # right eye
                        [56.0252, 71.7366],   # nose tip
                        [41.5493, 92.3655],   # left mouth corner
                        [70.7299, 92.2041]],  # right mouth corner
                       dtype=np.float64)


MAX_CROP = 1024  # a face crop side larger than this is a mistake (40000 px: 4.8 GB a face)


def template(size=112):
    """The ArcFace five-point template for a (size x size) crop: the 112 template scaled by size / 112."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or not 0 < size <= MAX_CROP:
        raise ValueError('crop size must be an int from 1 to %d, got %r' % (MAX_CROP, size))
    return ARCFACE_112 * (size / 112.0)


def similarity_transform(src, dst):
    """The 2x3 matrix M of the similarity that maps the points `src` onto `dst` best in least squares.

    M = [s R | t] with R a rotation (det +1: a mirror image is never produced), s > 0 the scale and t the
    shift, minimising sum |s R src_i + t - dst_i|^2 (Umeyama's closed form from the SVD of the covariance).

    :param src: (N, 2) points, N >= 2, not all equal
    :param dst: (N, 2) target points
    :return: (2, 3) float64
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError('need two equally long lists of at least 2 points, got %d and %d' % (len(src), len(dst)))
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError('points must be finite numbers')
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError('the source points coincide: no transform is defined')
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best orthogonal map would be a reflection
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (d * sign).sum() / var_s
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


def apply_transform(m, points):
    """(N, 2) points mapped by the 2x3 matrix m."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m, dtype=np.float64)[:, 2]
