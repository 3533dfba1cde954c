"""RetinaFace detector: ``from retinaface import RetinaFace``.

    detector = RetinaFace('model/mnet.25', 0, ctx_id=-1, network='net3')
    faces, landmarks = detector.detect(img_bgr, threshold=0.8, scales=[1.0], do_flip=False)
    # faces: float32 (N, 5) x1, y1, x2, y2, score; landmarks: float32 (N, 5, 2)
    cov = RetinaFace('model/mnet_cov2', 0, ctx_id=-1, network='net3l')   # Anti-Cov: faces (N, 6), + mask score
    onnx = RetinaFace('model/mnet.25.onnx', ctx_id=-1, network='net3')    # the export, on ONNX Runtime: no MXNet

Command line (``rcnn/tools/detect.py``): ``python retinaface.py --prefix model/mnet.25 --epoch 0 --image photo.jpg
--output out.jpg`` (--image may be a folder; detections are printed and saved as JSON next to the drawn images).

One detector may be shared by several threads: calls run one at a time (a lock around the bound executors).
Importing this module changes nothing in the process and does not import MXNet (rcnn/compat.py).
"""
import collections
import logging
import os
import sys
import threading

import cv2
import numpy as np

from rcnn.core.checkpoint import CheckpointError
from rcnn.core.inference import load_model
from rcnn.imageio import read_image
from rcnn.processing.align import similarity_transform, template as align_template
from rcnn.presets import anchor_config
from rcnn.processing.anchors import AnchorCache
from rcnn.processing.bbox_transform import flip_boxes, flip_landmarks
from rcnn.processing.decode import HeadLayoutError, decode_level, head_layout
from rcnn.processing.nms import bbox_vote, nms
from rcnn.processing.pose import large_pose

__all__ = ['RetinaFace', 'read_image', 'draw_detections', 'single_scale']
logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
FACE_COLOUR, MASK_COLOUR = (0, 0, 255), (0, 255, 0)  # BGR: red box; green for a masked face (Anti-Cov)
LANDMARK_COLOURS = [(0, 255, 0), (0, 0, 255), (0, 0, 255), (0, 255, 0), (0, 0, 255)]  # BGR per point


def as_bgr(img):
    """Validate and normalise an input image to (H, W, 3) BGR with pixel values 0..255."""
    if img is None:
        raise ValueError('image is None (cv2.imread returns None for a missing or unreadable file)')
    if isinstance(img, (str, os.PathLike)):
        return read_image(os.fspath(img))
    if not isinstance(img, np.ndarray):
        raise ValueError('image must be a numpy array (H, W, 3) BGR or a file path, got %s' % type(img).__name__)
    if img.size == 0:
        raise ValueError('image is empty: shape %s' % (img.shape,))
    if img.ndim == 2:
        img = cv2.cvtColor(img if img.dtype == np.uint8 else img.astype(np.float32), cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # BGRA: drop alpha
    elif img.ndim != 3 or img.shape[2] != 3:
        raise ValueError('image must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, got shape %s' % (img.shape,))
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_ or not np.issubdtype(img.dtype, np.number):
        raise ValueError('image dtype %s is not a pixel type' % img.dtype)
    if not np.isfinite(img).all():
        raise ValueError('image contains NaN or infinite values')
    if np.issubdtype(img.dtype, np.floating) and img.max() <= 1.0 and img.max() > 0:
        raise ValueError('float image looks normalised to 0..1; the detector expects BGR values in 0..255 '
                         '(multiply by 255)')
    if img.min() < 0 or img.max() > 255:
        raise ValueError('image values must lie in 0..255, got %g..%g' % (img.min(), img.max()))
    return img.astype(np.float32)


def check_detect_args(threshold, scales):
    """(threshold, list of scales) checked: ValueError saying what is wrong."""
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError('threshold must be a number in [0, 1], got %r' % (threshold,)) from None
    if not 0.0 <= threshold <= 1.0:  # NaN fails too
        raise ValueError('threshold must lie in [0, 1] (a face probability), got %r' % threshold)
    if isinstance(scales, (int, float, np.number)):
        scales = [scales]
    try:
        scales = [float(v) for v in scales]
    except (TypeError, ValueError):
        raise ValueError('scales must be a number or a list of numbers, got %r' % (scales,)) from None
    if not scales:
        raise ValueError('scales is empty: give at least one resize factor, e.g. scales=[1.0]')
    bad = [v for v in scales if not (np.isfinite(v) and v > 0)]
    if bad:
        raise ValueError('scales must be positive finite numbers, got %s' % bad)
    return threshold, scales


def single_scale(shape, target_size=1024, max_size=1980):
    """The single-scale rule of the original demo / WIDER mode 0: short side to target, long side capped."""
    short, long_ = min(shape[:2]), max(shape[:2])
    scale = float(target_size) / short
    if np.round(scale * long_) > max_size:
        scale = float(max_size) / long_
    return scale


class RetinaFace:
    """Face detector over a RetinaFace model: an MXNet checkpoint (the 9-output test graph; 6 outputs for
    box-only models, 12 for the mask-aware Anti-Cov graph with ``network='net3l'``), or its ONNX export
    (``rcnn.tools.export_onnx``), which runs on ONNX Runtime without MXNet. Both engines share every step
    after the network (anchors, decoding, NMS or voting, flip, scales).

    :param prefix: checkpoint prefix (``prefix-symbol.json`` + ``prefix-%04d.params``), or a ``.onnx`` file
    :param epoch: checkpoint epoch (unused for an ``.onnx`` file)
    :param ctx_id: GPU id, or -1 for the CPU
    :param network: anchor/normalisation preset ('net3' for both published models; see rcnn/presets.py)
    :param nms: IoU threshold of NMS (or of box voting)
    :param nocrop: zero-pad the input bottom/right to multiples of 32
    :param decay4: score multiplier of the stride-4 level (networks with 4+ levels)
    :param vote: box voting instead of NMS (landmarks are then returned as None, as in the original)
    :param max_side: largest network input side (pixels) accepted; larger inputs raise ValueError

    Loading an MXNet model on the CPU build, before MXNet is first imported, selects MXNet's calling-thread
    engine unless ``MXNET_ENGINE_TYPE`` is set (rcnn/cpu_engine.py: a second core then helps). Importing this
    module changes nothing in the process and does not import MXNet.
    """

    def __init__(self, prefix, epoch=0, ctx_id=0, network='net3', nms=0.4, nocrop=False, decay4=0.5, vote=False,
                 max_side=8192):
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError('epoch must be a non-negative int (the NNNN of prefix-NNNN.params), got %r' % (epoch,))
        preset = anchor_config(network)
        self.network = network
        self.ctx_id = int(ctx_id)
        if not (np.isfinite(nms) and nms <= 1.0):
            raise ValueError('nms must be an IoU threshold in (0, 1] (or <= 0 for the raw candidates), got %r' % nms)
        self.nms_threshold = nms
        self.nocrop = nocrop
        self.decay4 = decay4
        self.vote = vote
        self.max_side = max_side
        self._feat_stride_fpn = list(preset['strides'])
        self.anchor_cfg = preset['anchor_cfg']
        self._anchors = AnchorCache(self.anchor_cfg, self._feat_stride_fpn)
        self._num_anchors = {s: len(self._anchors.base[s]) for s in self._feat_stride_fpn}
        self.pixel_means = np.array(preset['pixel_means'], dtype=np.float32)  # BGR
        self.pixel_stds = np.array(preset['pixel_stds'], dtype=np.float32)
        self.pixel_scale = 1.0
        self._normalise = not (np.all(self.pixel_means == 0) and np.all(self.pixel_stds == 1))
        self.landmark_std = preset['landmark_std']

        self.model = load_model(prefix, epoch, self.ctx_id)
        self.params_path = self.model.params_path
        source = self.model.source
        if self.model.preset is not None and self.model.preset != network:
            trained = self.model.preset
            raise CheckpointError("%s was trained with the anchor preset %r, not network=%r: load it with "
                                  "network='%s'" % (source, trained, network, trained))
        try:
            self._heads = head_layout(self.model.output_names, self._feat_stride_fpn, network, source)
        except HeadLayoutError as err:
            raise CheckpointError(str(err)) from None
        first = self._heads[self._feat_stride_fpn[0]]
        self.use_landmarks = first['landmark'] is not None
        self.use_mask = first['type'] is not None  # Anti-Cov: faces get a sixth column, the mask score
        self._check_anchor_count(source, self.model.probe_shapes)
        self._lock = threading.Lock()  # one call at a time: the bound executors and their inputs are shared

    @property
    def sym(self):
        """The MXNet graph (None for an ONNX model)."""
        return self.model.sym

    @property
    def errors(self):
        """Exception types a forward pass of this engine raises besides ValueError (MXNet's MXNetError)."""
        return self.model.errors

    def _check_anchor_count(self, source, out_shapes):
        """Each head's channels must be (2, 4, 10, 3) x the preset's anchors per cell."""
        per_anchor = {'cls': 2, 'bbox': 4, 'landmark': 10, 'type': 3}
        for s, heads in self._heads.items():
            for kind, idx in heads.items():
                if idx is None:
                    continue
                channels, want = out_shapes[idx][1], per_anchor[kind] * self._num_anchors[s]
                if channels != want:
                    raise CheckpointError('%s: output %s has %d channels, network=%r expects %d (%d '
                                          'anchors per cell); use the preset the model was trained with'
                                          % (source, self.model.output_names[idx], channels, self.network, want,
                                             self._num_anchors[s]))

    def release(self):
        """Free every bound executor (their memory); the next call binds again."""
        with self._lock:
            self.model.release()

    def _to_tensor(self, imgs, out=None):
        """(B, H, W, 3) BGR -> (B, 3, H, W) float32 RGB, normalised by the preset (written into `out`)."""
        if out is None:
            out = np.empty((len(imgs), 3) + imgs[0].shape[:2], dtype=np.float32)
        for b, img in enumerate(imgs):
            planes = cv2.split(img)  # contiguous B, G, R planes: 3x faster than one strided transposed copy
            for c in range(3):
                np.copyto(out[b, c], planes[2 - c], casting='unsafe')  # BGR HWC -> RGB CHW
        if self._normalise:
            out /= self.pixel_scale
            out -= self.pixel_means[::-1].reshape(1, 3, 1, 1)  # means/stds are listed in BGR order
            out /= self.pixel_stds[::-1].reshape(1, 3, 1, 1)
        return out

    def forward(self, tensor):
        """Raw network outputs (list of numpy arrays, graph order; face probabilities for the classification
        heads) for a (B, 3, H, W) normalised tensor."""
        tensor = np.asarray(tensor, dtype=np.float32)
        with self._lock:
            return self.model.run(tensor.shape, lambda out: np.copyto(out, tensor))

    def _forward_images(self, imgs):
        """Raw outputs for same-size (H, W, 3) images, converted straight into the engine's input."""
        return self.model.run((len(imgs), 3) + imgs[0].shape[:2], lambda out: self._to_tensor(imgs, out=out))

    def _prepare(self, img, scale, flip):
        """Resized (, mirrored, padded) network input and its size before padding."""
        if not scale > 0 or min(round(img.shape[0] * scale), round(img.shape[1] * scale)) < 1:
            raise ValueError('image of %dx%d pixels becomes empty at scale %g' % (img.shape[1], img.shape[0], scale))
        im = img if scale == 1.0 else cv2.resize(img, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        if flip:
            im = im[:, ::-1, :]
        h, w = im.shape[:2]
        if self.nocrop:
            ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
            if (ph, pw) != (h, w):
                padded = np.zeros((ph, pw, 3), dtype=im.dtype)
                padded[:h, :w] = im
                im = padded
        if max(im.shape[:2]) > self.max_side:
            raise ValueError('network input %dx%d exceeds max_side=%d; use a smaller scale or raise max_side'
                             % (im.shape[1], im.shape[0], self.max_side))
        return im, (h, w)

    def _decode(self, outputs, b, size, scale, flip, threshold):
        """Candidates of one image of a batch: (boxes (K,4) f64, scores (K,), landmarks (K,5,2) or None,
        mask scores (K,) or None)."""
        boxes, scores, points, masks = [], [], [], []
        for stride in self._feat_stride_fpn:
            heads = {k: (None if i is None else outputs[i][b]) for k, i in self._heads[stride].items()}
            deltas = heads['bbox']
            found = decode_level(heads['cls'], deltas, self._anchors.get(stride, deltas.shape[1], deltas.shape[2]),
                                 threshold, size, heads['landmark'], self.decay4 if stride == 4 else 1.0,
                                 self.landmark_std, heads['type'])
            if found is not None:
                for acc, part in zip((boxes, scores, points, masks), found):
                    if part is not None:
                        acc.append(part)
        if not boxes:
            return None
        boxes, scores = np.vstack(boxes), np.concatenate(scores)
        points = np.concatenate(points) if points else None
        masks = np.concatenate(masks) if masks else None
        if flip:  # back to the unmirrored image: x' = W - x - 1, eyes and mouth corners swap
            boxes = flip_boxes(boxes, size[1])
            if points is not None:
                points = flip_landmarks(points, size[1])
        boxes /= scale
        if points is not None:
            points /= scale
        return boxes, scores, points, masks

    def _suppress(self, candidates):
        """Candidates of all scales/flips of one image -> (faces (N, 5 or 6), landmarks (N, 5, 2) or None).

        ``nms <= 0`` keeps every candidate (the original's raw mode), best first.
        """
        columns = 6 if self.use_mask and not self.vote else 5
        if not candidates:
            empty_points = np.zeros((0, 5, 2), dtype=np.float32) if self.use_landmarks and not self.vote else None
            return np.zeros((0, columns), dtype=np.float32), empty_points
        boxes = np.vstack([c[0] for c in candidates])
        scores = np.concatenate([c[1] for c in candidates])
        order = np.argsort(-scores, kind='stable')
        parts = [boxes[order], scores[order, None]]
        if self.use_mask:
            parts.append(np.concatenate([c[3] for c in candidates])[order, None])
        det = np.hstack(parts).astype(np.float32)
        if self.vote:  # voting merges boxes: no landmarks (as the original) and no mask column
            return bbox_vote(det[:, :5], self.nms_threshold).astype(np.float32), None
        if self.nms_threshold <= 0:
            keep = np.arange(len(det))
        else:
            keep = nms(det, self.nms_threshold, device_id=self.ctx_id if self.ctx_id >= 0 else None)
        if not self.use_landmarks:
            return det[keep], None
        points = np.concatenate([c[2] for c in candidates])[order][keep].astype(np.float32)
        return det[keep], points

    def detect(self, img, threshold=0.5, scales=(1.0,), do_flip=False):
        """Detect faces in one BGR image (array or file path).

        :param img: the image; or a list of images, with the original's meaning: the candidates of all of them
                    are suppressed together and returned as one set, each box in its own image's pixels (for
                    one result per image use ``detect_batch``)
        :param threshold: minimum face probability of a candidate (applied before NMS), in [0, 1]
        :param scales: resize factors (a number or a non-empty list); candidates of all scales (and flips)
                       are suppressed together
        :param do_flip: also run on the mirrored image
        :return: faces float32 (N, 5) x1, y1, x2, y2, score in input-image pixels, best first -- (N, 6) with
                 the mask score as sixth column for mask-aware (Anti-Cov, ``net3l``) models (not with vote=True,
                 which merges boxes); landmarks float32 (N, 5, 2) (None with vote=True or a graph without
                 landmarks)
        """
        if isinstance(img, (list, tuple)):
            if not img:
                raise ValueError('detect() got an empty list of images')
            per_image = self._candidates([as_bgr(im) for im in img], threshold, scales, do_flip)
            return self._suppress([c for cands in per_image for c in cands])
        return self.detect_batch([img], threshold, scales, do_flip)[0]

    def detect_center(self, img, threshold=0.5, scales=(1.0,), do_flip=False):
        """The one face that is large and central (as the original's detect_center).

        Picks the detection maximising box area - 2 x squared distance of its centre to the image centre.
        :return: (face (5,), landmarks (5, 2)) or (None, None) when nothing is found
        """
        img = as_bgr(img)
        faces, landmarks = self.detect(img, threshold, scales, do_flip)
        if len(faces) == 0:
            return None, None
        area = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
        dx = (faces[:, 0] + faces[:, 2]) / 2 - img.shape[1] / 2
        dy = (faces[:, 1] + faces[:, 3]) / 2 - img.shape[0] / 2
        best = int(np.argmax(area - 2.0 * (dx ** 2 + dy ** 2)))
        return faces[best], None if landmarks is None else landmarks[best]

    def detect_batch(self, imgs, threshold=0.5, scales=(1.0,), do_flip=False):
        """``detect`` for a list of images; same-size images share one forward pass per scale/flip.

        :return: list of (faces, landmarks), one per image, equal to calling ``detect`` on each
        """
        return [self._suppress(c) for c in self._candidates([as_bgr(im) for im in imgs], threshold, scales, do_flip)]

    def _candidates(self, imgs, threshold, scales, do_flip):
        """Per image, the decoded candidates of every scale and flip (before suppression)."""
        threshold, scales = check_detect_args(threshold, scales)
        groups = collections.defaultdict(list)
        for i, im in enumerate(imgs):
            groups[im.shape].append(i)
        candidates = [[] for _ in imgs]
        with self._lock:
            self._run_groups(imgs, groups, candidates, threshold, scales, do_flip)
        return candidates

    def _run_groups(self, imgs, groups, candidates, threshold, scales, do_flip):
        for idxs in groups.values():
            for scale in scales:
                for flip in ((False, True) if do_flip else (False,)):
                    prepared = [self._prepare(imgs[i], scale, flip) for i in idxs]
                    outputs = self._forward_images([p[0] for p in prepared])
                    for b, i in enumerate(idxs):
                        found = self._decode(outputs, b, prepared[b][1], scale, flip, threshold)
                        if found is not None:
                            candidates[i].append(found)

    @staticmethod
    def align(img, landmarks, size=112):
        """Aligned face crops for recognition: each face's five landmarks mapped onto the ArcFace template
        (least-squares similarity, ``rcnn.processing.align``) by cv2.warpAffine.

        :param img: the BGR image the landmarks were detected in (array or file path)
        :param landmarks: (N, 5, 2) from ``detect`` (or (5, 2) for one face)
        :param size: side of the square crops (112: the ArcFace template; other sizes scale it)
        :return: uint8 (N, size, size, 3) BGR crops
        """
        img = as_bgr(img)
        if landmarks is None:
            raise ValueError('no landmarks to align (a box-only model, or detect(..., vote=True) returns None)')
        points = np.asarray(landmarks, dtype=np.float64)
        points = points.reshape(1, 5, 2) if points.shape == (5, 2) else points
        if points.ndim != 3 or points.shape[1:] != (5, 2):
            raise ValueError('landmarks must be (N, 5, 2) or (5, 2), got shape %s' % (points.shape,))
        dst = align_template(size)
        crops = np.zeros((len(points), size, size, 3), dtype=np.uint8)
        src = img if img.dtype == np.uint8 else np.clip(img, 0, 255).astype(np.uint8)
        for k, pts in enumerate(points):
            cv2.warpAffine(src, similarity_transform(pts, dst), (size, size), dst=crops[k], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return crops

    def get_input(self, img):
        """The normalised network input of an image at scale 1: float32 (1, 3, H, W), RGB, the preset's
        mean/std applied (the original's public name for it)."""
        return self._to_tensor([as_bgr(img)])

    @staticmethod
    def check_large_pose(landmark, bbox):
        """Pose check of the original detector from five landmarks and their box.

        :param landmark: (5, 2) left eye, right eye, nose, left and right mouth corner
        :param bbox: x1, y1, x2, y2 (further columns are ignored)
        :return: (pose, left, right, up, down): pose 0 frontal, 1 turned to the left, 2 to the right, 3 looking up,
                 4 looking down; the four scores are the angle ratios it is decided from (10.0 where an angle
                 is degenerate)
        """
        return large_pose(landmark, bbox)


def draw_detections(img, faces, landmarks=None, mask_thresh=0.2, ids=None):
    """Copy of a BGR image with boxes (red; green for a mask score >= mask_thresh when faces have the sixth,
    mask column of an Anti-Cov model), scores (and track IDs, `ids`) and the five landmarks drawn."""
    out = np.ascontiguousarray(img.copy())
    for k, face in enumerate(faces):
        x1, y1, x2, y2 = [int(v) for v in face[:4]]
        masked = len(face) > 5 and face[5] >= mask_thresh
        cv2.rectangle(out, (x1, y1), (x2, y2), MASK_COLOUR if masked else FACE_COLOUR, 2)
        text = ('id %d ' % ids[k] if ids is not None else '') + '%.2f' % face[4] + (
            ' mask %.2f' % face[5] if len(face) > 5 else '')
        cv2.putText(out, text, (x1, max(0, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        if landmarks is not None:
            for p, (x, y) in enumerate(landmarks[k]):
                cv2.circle(out, (int(x), int(y)), 1, LANDMARK_COLOURS[p], 2)
    return out


if __name__ == '__main__':
    from rcnn.tools.detect import main  # the command line lives in rcnn/tools/detect.py
    sys.exit(main())
