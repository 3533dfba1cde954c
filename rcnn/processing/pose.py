"""Large-pose check of the original detector from five facial landmarks (pure numpy).

Angles are measured at landmark triangles, in degrees, with the image y axis pointing up (as on paper):
``angle(o, a, b)`` is the signed turn from the ray o->a to the ray o->b, wrapped to (-180, 180].
A frontal face has balanced angles on its left and right; a turned face squeezes one side.
"""
import numpy as np

__all__ = ['large_pose', 'POSE_FRONTAL', 'POSE_LEFT', 'POSE_RIGHT', 'POSE_UP', 'POSE_DOWN']
POSE_FRONTAL, POSE_LEFT, POSE_RIGHT, POSE_UP, POSE_DOWN = 0, 1, 2, 3, 4
DEGENERATE = 10.0  # score given where the angle it divides by is not positive (or, up/down, <= 10 degrees)
LEFT_RIGHT_SURE, LEFT_RIGHT_LIKELY, UP_LIMIT, DOWN_LIMIT = 3.0, 2.0, 2.0, 5.0
EYE_L, EYE_R, NOSE, MOUTH_L, MOUTH_R = range(5)


def _angle(o, a, b):
    """Signed angle (degrees) from o->a to o->b, y axis up, in (-180, 180]."""
    va = (a[0] - o[0], o[1] - a[1])
    vb = (b[0] - o[0], o[1] - b[1])
    d = np.degrees(np.arctan2(vb[1], vb[0]) - np.arctan2(va[1], va[0]))
    if d < -180.0:
        d += 360.0
    elif d > 180.0:
        d -= 360.0
    return d


def large_pose(landmark, bbox):
    """(pose, left_score, right_score, up_score, down_score) of one face.

    :param landmark: (5, 2) left eye, right eye, nose, left and right mouth corner (image pixels)
    :param bbox: x1, y1, x2, y2 of the face
    pose: 0 frontal, 1 left, 2 right (a side score >= 3, or >= 2 with the other side's eye/mouth midpoint
    past the box centre), 3 up (up score >= 2), 4 down (down score >= 5), checked in that order.
    """
    p = np.asarray(landmark, dtype=np.float32).reshape(5, 2)
    bbox = np.asarray(bbox, dtype=np.float64).reshape(-1)
    if bbox.size < 4:
        raise ValueError('bbox must hold x1, y1, x2, y2, got %d values' % bbox.size)
    if not (np.isfinite(p).all() and np.isfinite(bbox[:4]).all()):
        raise ValueError('landmarks and bbox must be finite numbers (no pose can be told from NaN/inf)')
    t = [_angle(p[o], p[a], p[b]) for o, a, b in (
        (EYE_L, MOUTH_L, NOSE), (EYE_R, NOSE, MOUTH_R),      # t1, t2: nose seen from each eye
        (EYE_L, NOSE, EYE_R), (EYE_R, EYE_L, NOSE),          # t3, t4: eye line against the nose
        (MOUTH_L, MOUTH_R, NOSE), (MOUTH_R, NOSE, MOUTH_L),  # t5, t6: mouth line against the nose
        (MOUTH_L, NOSE, EYE_L), (MOUTH_R, EYE_R, NOSE))]     # t7, t8: nose seen from each mouth corner
    left = right = 0.0
    if t[0] <= 0.0:
        left = DEGENERATE
    elif t[1] <= 0.0:
        right = DEGENERATE
    else:
        left, right = t[1] / t[0], t[0] / t[1]
    up = DEGENERATE if t[2] <= 10.0 or t[3] <= 10.0 else max(t[0] / t[2], t[1] / t[3])
    down = DEGENERATE if t[4] <= 10.0 or t[5] <= 10.0 else max(t[6] / t[4], t[7] / t[5])
    centre_x = (bbox[0] + bbox[2]) / 2
    left_mid = (p[EYE_L, 0] + p[MOUTH_L, 0]) / 2
    right_mid = (p[EYE_R, 0] + p[MOUTH_R, 0]) / 2
    if left >= LEFT_RIGHT_SURE or (left >= LEFT_RIGHT_LIKELY and right_mid <= centre_x):
        pose = POSE_LEFT
    elif right >= LEFT_RIGHT_SURE or (right >= LEFT_RIGHT_LIKELY and left_mid >= centre_x):
        pose = POSE_RIGHT
    elif up >= UP_LIMIT:
        pose = POSE_UP
    elif down >= DOWN_LIMIT:
        pose = POSE_DOWN
    else:
        pose = POSE_FRONTAL
    return pose, float(left), float(right), float(up), float(down)
