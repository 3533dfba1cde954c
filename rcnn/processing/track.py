"""Face tracks across video frames: a track ID per face that stays with the person.

Association in the manner of ByteTrack (Zhang et al., ECCV 2022): each frame's detections are split by score;
the confident ones are matched first to every live track (those seen last frame and those missed for a while),
then the weak ones only to the tracks still unmatched that were seen in the previous frame, which keeps a track
alive through a blur or a turn without letting weak detections start tracks of their own. Matching is a
minimum-cost assignment on 1 - IoU between the detections and each track's predicted box (its last box moved by
its smoothed velocity), solved by ``scipy.optimize.linear_sum_assignment`` (SciPy is already a dependency of the
evaluation; the ByteTrack packages on PyPI bring their own Kalman filters and Torch or lap/cython_bbox wheels,
more than a face track needs). A track missed for more than ``max_missed`` frames ends; its ID is never reused.

    tracker = FaceTracker()
    for frame in frames:
        faces, landmarks = detector.detect(frame, threshold=tracker.low_thresh, scales=[scale])
        ids = tracker.update(faces)          # one ID per face, -1 for a weak face that joined no track
        for box in tracker.covered():        # every live track's box, also where this frame missed it
            ...
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from rcnn.processing.bbox_transform import bbox_overlaps

__all__ = ['FaceTracker']


class _Track:
    __slots__ = ('id', 'box', 'velocity', 'missed', 'hits', 'score')

    def __init__(self, track_id, box, score):
        self.id, self.box, self.score = track_id, np.asarray(box, dtype=np.float64), float(score)
        self.velocity = np.zeros(4)
        self.missed, self.hits = 0, 1

    def predicted(self):
        return self.box + self.velocity * (self.missed + 1)

    def update(self, box, score, smoothing):
        box = np.asarray(box, dtype=np.float64)
        step = (box - self.box) / (self.missed + 1)
        self.velocity = smoothing * self.velocity + (1 - smoothing) * step if self.hits > 1 else step
        self.box, self.score = box, float(score)
        self.missed = 0
        self.hits += 1


class FaceTracker:
    """Frame-by-frame face tracks over ``RetinaFace.detect`` results.

    :param high_thresh: a detection at or above this score is confident: it may start a track
    :param low_thresh: weaker detections down to this score only extend tracks (detect at this threshold)
    :param match_iou: least IoU between a confident detection and a track's predicted box
    :param low_match_iou: least IoU for a weak detection (stricter: it must clearly continue a track)
    :param max_missed: frames a track survives without a detection before it ends
    :param smoothing: weight of the previous velocity in the new one (0: the last step only)
    """

    def __init__(self, high_thresh=0.8, low_thresh=0.3, match_iou=0.3, low_match_iou=0.5, max_missed=30,
                 smoothing=0.7):
        if not 0.0 <= low_thresh <= high_thresh <= 1.0:
            raise ValueError('need 0 <= low_thresh <= high_thresh <= 1, got %r and %r' % (low_thresh, high_thresh))
        if max_missed < 0:
            raise ValueError('max_missed must be >= 0 frames, got %r' % max_missed)
        self.high_thresh, self.low_thresh = float(high_thresh), float(low_thresh)
        self.match_iou, self.low_match_iou = float(match_iou), float(low_match_iou)
        self.max_missed, self.smoothing = int(max_missed), float(smoothing)
        self.tracks = []
        self.next_id = 1
        self.frame = -1

    def _assign(self, tracks, boxes, min_iou):
        """[(track index, detection index)] of the minimum-cost matching with IoU >= min_iou."""
        if not tracks or not len(boxes):
            return []
        iou = bbox_overlaps(np.array([t.predicted() for t in tracks]), boxes)
        rows, cols = linear_sum_assignment(1.0 - iou)
        return [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]

    def update(self, faces):
        """Add one frame's detections (faces (N, >= 5): x1, y1, x2, y2, score, ...).

        :return: int64 (N,) the track ID of each face; -1 for a face below ``high_thresh`` that continued no
                 track (callers normally drop those), and for faces below ``low_thresh``
        """
        self.frame += 1
        faces = np.asarray(faces, dtype=np.float64)
        if faces.ndim != 2 or (len(faces) and faces.shape[1] < 5):
            faces = faces.reshape(-1, 5)
        ids = np.full(len(faces), -1, dtype=np.int64)
        scores = faces[:, 4] if len(faces) else np.zeros(0)
        high = np.flatnonzero(scores >= self.high_thresh)
        low = np.flatnonzero((scores >= self.low_thresh) & (scores < self.high_thresh))
        # 1. confident detections against every live track
        matched_tracks = set()
        for r, c in self._assign(self.tracks, faces[high, :4], self.match_iou):
            track = self.tracks[r]
            track.update(faces[high[c], :4], scores[high[c]], self.smoothing)
            ids[high[c]] = track.id
            matched_tracks.add(r)
        # 2. weak detections keep alive the tracks seen in the previous frame that are still unmatched
        rest = [i for i, t in enumerate(self.tracks) if i not in matched_tracks and t.missed == 0]
        for r, c in self._assign([self.tracks[i] for i in rest], faces[low, :4], self.low_match_iou):
            track = self.tracks[rest[r]]
            track.update(faces[low[c], :4], scores[low[c]], self.smoothing)
            ids[low[c]] = track.id
            matched_tracks.add(rest[r])
        # 3. unmatched tracks age; those missed too long end
        for i, track in enumerate(self.tracks):
            if i not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        # 4. confident detections that joined no track start one
        for i in high:
            if ids[i] < 0:
                self.tracks.append(_Track(self.next_id, faces[i, :4], scores[i]))
                ids[i] = self.next_id
                self.next_id += 1
        return ids

    def covered(self):
        """(track ID, x1, y1, x2, y2) of every live track: the detected box in this frame, the predicted one
        where this frame missed it (to keep a face anonymised through a missed detection)."""
        return [(t.id,) + tuple(t.box if t.missed == 0 else t.predicted() - t.velocity) for t in self.tracks]
