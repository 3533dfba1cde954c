"""RetinaFace annotations (``<dataset_path>/<split>/label.txt`` + ``images/``) and the roidb.

label.txt: a line ``# <path relative to images/>`` starts an image; each following line is a face:
``x y w h`` (val/test), optionally followed by 5 x ``lx ly v`` (left eye, right eye, nose, left and
right mouth corner) and ``blur`` (train: 20 numbers). Landmark flag in the file: -1 missing (point
must be -1 -1), 0 visible, 1 annotated but occluded.

roidb record keys:
  image (str path), width, height (int), flipped (bool),
  boxes (G, 4) float32 x1, y1, x2, y2 with the original's convention (``xywh_to_boxes``),
  landmarks (G, 5, 3) float32 x, y, flag with flag 1.0 visible, 0.0 occluded, -1.0 missing,
  blur (G,) float32, label_line (G,) int (line of each face in label.txt).
"""
import hashlib
import json
import logging
import os

import numpy as np

from rcnn.fileio import atomic_open
from rcnn.imageio import AnnotationError, check_jpeg_complete, read_image as read_training_image  # noqa: F401
from rcnn.processing.bbox_transform import flip_boxes, flip_landmarks

__all__ = ['AnnotationError', 'unsafe_image_path', 'parse_label_file', 'xywh_to_boxes', 'read_training_image', 'check_jpeg_complete',
           'RetinaFaceDataset', 'flip_roidb']
logger = logging.getLogger(__name__)
CACHE_VERSION = 5  # 3: boxes x2 = x + w (the original convention); 4: JSON instead of a pickle; 5: image stamps
# The roidb cache is JSON (data only, never executed); its arrays are stored as lists and rebuilt with these
# dtypes and shapes. A cache that does not parse or does not fit this schema is rebuilt from label.txt.
_CACHE_ARRAYS = {'boxes': (np.float32, (-1, 4)), 'landmarks': (np.float32, (-1, 5, 3)), 'blur': (np.float32, (-1,)),
                 'label_line': (np.int64, (-1,))}
_CACHE_SCALARS = {'image': str, 'width': int, 'height': int, 'flipped': bool, 'rel_path': str, 'where': str}
FLAG_VISIBLE, FLAG_OCCLUDED, FLAG_MISSING = 1.0, 0.0, -1.0
BLUR_DEFAULT = 0.3  # negative blur values in the file mean "unknown"


def _face_values(values, where, with_landmarks):
    if len(values) not in (4, 19, 20):
        raise AnnotationError('%s: expected 4 numbers (x y w h), or 19/20 with 5 landmarks (x y flag) and '
                              'blur, got %d' % (where, len(values)))
    box = values[:4]
    if box[2] < 0 or box[3] < 0:
        raise AnnotationError('%s: negative box width/height %g x %g' % (where, box[2], box[3]))
    lms = np.full((5, 3), -1.0, dtype=np.float32)
    blur = BLUR_DEFAULT
    if with_landmarks and len(values) >= 19:
        raw = np.asarray(values[4:19], dtype=np.float32).reshape(5, 3)
        for p, (x, y, v) in enumerate(raw):
            if v == -1:
                if not (x == -1 and y == -1):
                    raise AnnotationError('%s: landmark %d is flagged missing (-1) but has coordinates %g %g'
                                          % (where, p, x, y))
                lms[p] = (-1, -1, FLAG_MISSING)
            elif v in (0, 1):
                lms[p] = (x, y, FLAG_VISIBLE if v == 0 else FLAG_OCCLUDED)
            else:
                raise AnnotationError('%s: landmark %d flag must be -1, 0 or 1, got %g' % (where, p, v))
        if len(values) == 20 and values[19] >= 0:
            blur = values[19]
    return box, lms, blur


def unsafe_image_path(path):
    """Why a label.txt image path may not be used (absolute, or with a '..' part), or None when it is safe."""
    if os.path.isabs(path) or path.startswith(('/', '\\')) or (len(path) > 1 and path[1] == ':'):
        return 'is absolute'
    if any(part == '..' for part in path.replace('\\', '/').split('/')):
        return "contains '..'"
    return None


def parse_label_file(label_path, with_landmarks=True, skip_bad=False, skipped=None):
    """label.txt -> list of {'path', 'line', 'boxes_xywh' (G,4), 'landmarks' (G,5,3), 'blur' (G,), 'lines' (G,)}.

    A malformed line raises AnnotationError naming file:line; with skip_bad it is logged, appended to
    `skipped` as (where, why) and left out.
    """
    if not os.path.isfile(label_path):
        raise AnnotationError('label file not found: %s' % label_path)
    records, current = [], None

    def bad(err):
        if not skip_bad:
            raise err
        logger.warning('skipped: %s', err)
        if skipped is not None:
            skipped.append(str(err))

    with open(label_path, 'r', encoding='utf-8-sig', errors='replace') as f:  # -sig: a leading BOM is dropped
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            where = '%s:%d' % (label_path, lineno)
            if line.startswith('#'):
                path = line[1:].strip()
                if not path:
                    bad(AnnotationError('%s: "#" line without an image path' % where))
                    current = None
                    continue
                unsafe = unsafe_image_path(path)
                if unsafe:
                    bad(AnnotationError('%s: image path %r %s: paths are relative to images/ and stay inside it'
                                        % (where, path, unsafe)))
                    current = None
                    continue
                current = {'path': path, 'line': lineno, 'faces': []}
                records.append(current)
                continue
            if current is None:
                bad(AnnotationError('%s: face line before any "# <image path>" line' % where))
                continue
            try:
                values = [float(v) for v in line.split()]
                if not np.all(np.isfinite(values)):
                    raise AnnotationError('%s: non-finite number' % where)
                current['faces'].append((lineno,) + _face_values(values, where, with_landmarks))
            except ValueError as err:
                bad(err if isinstance(err, AnnotationError) else
                    AnnotationError('%s: not a list of numbers: %r' % (where, line[:60])))
    out = []
    for rec in records:
        faces = rec.pop('faces')
        rec['lines'] = np.array([f[0] for f in faces], dtype=np.int64)
        rec['boxes_xywh'] = np.array([f[1] for f in faces], dtype=np.float64).reshape(-1, 4)
        rec['landmarks'] = np.array([f[2] for f in faces], dtype=np.float32).reshape(-1, 5, 3)
        rec['blur'] = np.array([f[3] for f in faces], dtype=np.float32)
        out.append(rec)
    return out


def xywh_to_boxes(xywh, width, height):
    """Label ``x y w h`` -> (G, 4) float64 ``x1 = x, y1 = y, x2 = x + w, y2 = y + h``, the original's reading.

    Right and bottom are clipped to the image width and height (not W - 1); left and top are kept as
    written (they may be negative), as the original does. Every later step measures a box as
    ``x2 - x1 + 1`` pixels, so a face of w pixels trains as a box of w + 1, and a model that learned it
    decodes boxes with ``x2 - x1 = w``: exactly the ``w`` the WIDER writer reports (``x2 - x1``).
    Faces with ``x2 <= x1`` or ``y2 <= y1`` after clipping are dropped by the caller.
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.stack([xywh[:, 0], xywh[:, 1], np.minimum(xywh[:, 0] + xywh[:, 2], width),
                     np.minimum(xywh[:, 1] + xywh[:, 3], height)], axis=1)


def _image_size(path):
    """(width, height) of a readable, complete image file (decodes it: proves it is readable)."""
    img = read_training_image(path)
    return img.shape[1], img.shape[0]


def _record_to_json(rec):
    out = {k: rec[k] for k in _CACHE_SCALARS}
    out.update({k: rec[k].tolist() for k in _CACHE_ARRAYS})
    return out


def _record_from_json(obj):
    if not isinstance(obj, dict):
        raise ValueError('record is not an object')
    rec = {}
    for key, kind in _CACHE_SCALARS.items():
        if not isinstance(obj[key], kind):
            raise ValueError('%s is not %s' % (key, kind.__name__))
        rec[key] = obj[key]
    for key, (dtype, shape) in _CACHE_ARRAYS.items():
        rec[key] = np.asarray(obj[key], dtype=dtype).reshape(shape)
    if not (len(rec['boxes']) == len(rec['landmarks']) == len(rec['blur']) == len(rec['label_line'])):
        raise ValueError('arrays of different lengths')
    return rec


def _image_stamp(path):
    """(size, mtime in ns) of an image file: a replaced image invalidates the cache."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_cache(path, digest):
    """{'roidb', 'skipped'} from a JSON roidb cache made from this label file and these very images (sizes and
    modification times as cached), else None (rebuild)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, 'r') as f:
            cached = json.load(f)
        if not isinstance(cached, dict) or cached.get('version') != CACHE_VERSION or cached.get('digest') != digest:
            logger.info('%s is out of date: rebuilding the roidb', path)
            return None
        skipped = cached['skipped']
        if not isinstance(skipped, list) or not all(isinstance(x, str) for x in skipped):
            raise ValueError('skipped is not a list of strings')
        roidb = [_record_from_json(r) for r in cached['roidb']]
        stamps = cached['stamps']
        if not isinstance(stamps, list) or len(stamps) != len(roidb):
            raise ValueError('stamps do not match the records')
        changed = [r['image'] for r, stamp in zip(roidb, stamps) if _image_stamp(r['image']) != stamp]
        if changed:
            logger.info('%d images changed since %s was written (e.g. %s): rebuilding the roidb', len(changed),
                        path, changed[0])
            return None
        return {'roidb': roidb, 'skipped': skipped}
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.info('unreadable roidb cache %s (%s): rebuilding', path, err)
        return None


def flip_roidb(roidb):
    """Mirrored twins of every record (boxes x1' = W - x2 - 1, landmarks mirrored with eyes/mouth swapped)."""
    out = []
    for rec in roidb:
        twin = dict(rec)
        twin['boxes'] = flip_boxes(rec['boxes'], rec['width'])
        lms = flip_landmarks(rec['landmarks'], rec['width'])
        lms[lms[:, :, 2] == FLAG_MISSING] = (-1, -1, FLAG_MISSING)  # missing points stay (-1, -1)
        twin['landmarks'] = lms
        twin['flipped'] = True
        out.append(twin)
    return out


class RetinaFaceDataset:
    """One split of a RetinaFace-layout dataset.

    :param image_set: 'train', 'val' or 'test'
    :param root_path: parent of the roidb cache folder (``<root_path>/cache``)
    :param dataset_path: folder holding ``<image_set>/label.txt`` and ``<image_set>/images``
    """

    def __init__(self, image_set, root_path, dataset_path, skip_bad=False):
        self.image_set = image_set
        self.root_path = root_path
        self.data_path = os.path.join(dataset_path, image_set)
        self.label_path = os.path.join(self.data_path, 'label.txt')
        self.image_dir = os.path.join(self.data_path, 'images')
        self.skip_bad = skip_bad
        self.skipped = []
        self.name = 'retinaface_%s' % image_set

    @property
    def cache_file(self):
        return os.path.join(self.root_path, 'cache', '%s_gt_roidb.json' % self.name)

    def _label_digest(self):
        h = hashlib.sha1()
        with open(self.label_path, 'rb') as f:
            h.update(f.read())
        h.update(repr((CACHE_VERSION, self.skip_bad, os.path.abspath(self.image_dir))).encode())
        return h.hexdigest()

    def gt_roidb(self):
        """Records of every image (train: images without faces are left out, and counted)."""
        if not os.path.isfile(self.label_path):
            raise AnnotationError('label file not found: %s (expected the RetinaFace layout '
                                  '<dataset_path>/%s/label.txt + images/)' % (self.label_path, self.image_set))
        digest = self._label_digest()
        cached = _read_cache(self.cache_file, digest)
        if cached is not None:
            self.skipped = cached['skipped']
            logger.info('%s roidb loaded from %s', self.name, self.cache_file)
            return cached['roidb']
        roidb = self._build()
        try:
            os.makedirs(os.path.dirname(self.cache_file), exist_ok=True)
            with atomic_open(self.cache_file, what='roidb cache') as f:
                json.dump({'version': CACHE_VERSION, 'digest': digest, 'skipped': self.skipped,
                           'roidb': [_record_to_json(r) for r in roidb],
                           'stamps': [_image_stamp(r['image']) for r in roidb]}, f)
        except OSError as err:  # a read-only or full cache folder costs the next start a rebuild, nothing else
            logger.warning('roidb cache not written (%s): %s', self.cache_file, err)
        return roidb

    def _build(self):
        train = self.image_set == 'train'
        self.skipped = []
        records = parse_label_file(self.label_path, with_landmarks=train, skip_bad=self.skip_bad,
                                   skipped=self.skipped)
        roidb, no_faces = [], 0
        for rec in records:
            where = '%s:%d' % (self.label_path, rec['line'])
            path = os.path.join(self.image_dir, rec['path'])
            try:
                size = _image_size(path)
            except ValueError as why:
                err = AnnotationError('%s: %s' % (where, why))
                if not self.skip_bad:
                    raise err from None
                logger.warning('skipped: %s', err)
                self.skipped.append(str(err))
                continue
            width, height = size
            xywh = rec['boxes_xywh']
            boxes = xywh_to_boxes(xywh, width, height)
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            outside = (~valid) & (xywh[:, 2] > 0) & (xywh[:, 3] > 0)  # a real box, but none of it in the image
            for line in rec['lines'][outside][:3]:
                logger.warning('%s:%d: face box %s lies outside its %dx%d image: not used', self.label_path, line,
                               ' '.join('%g' % v for v in xywh[rec['lines'] == line][0]), width, height)
            if outside.sum() > 3:
                logger.warning('%s:%d: %d more face boxes of this image lie outside it', self.label_path,
                               rec['line'], outside.sum() - 3)
            entry = {'image': path, 'width': width, 'height': height, 'flipped': False,
                     'boxes': boxes[valid].astype(np.float32), 'landmarks': rec['landmarks'][valid],
                     'blur': rec['blur'][valid], 'label_line': rec['lines'][valid], 'rel_path': rec['path'],
                     'where': where}
            if train and not valid.any():
                no_faces += 1
                continue
            roidb.append(entry)
        if no_faces:
            logger.info('%s: %d training images have no usable face and are not used', self.label_path, no_faces)
        if self.skipped:
            logger.warning('%s: skipped %d bad entries (--skip_bad)', self.label_path, len(self.skipped))
        logger.info('%s: %d images, %d faces', self.label_path, len(roidb), sum(len(r['boxes']) for r in roidb))
        return roidb
