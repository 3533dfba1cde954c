"""The official WIDER FACE downloads -> a split in the RetinaFace layout (``label.txt`` + ``images/``).

    python -m rcnn.dataset.convert_wider --bbx_gt wider_face_split/wider_face_train_bbx_gt.txt \\
        --images WIDER_train/images --output data/retinaface/train
    python -m rcnn.dataset.convert_wider --bbx_gt wider_face_split/wider_face_val_bbx_gt.txt \\
        --images WIDER_val/images --output data/retinaface/val
    python -m rcnn.dataset.convert_wider --filelist wider_face_split/wider_face_test_filelist.txt \\
        --images WIDER_test/images --output data/retinaface/test

``label.txt`` is written as the released RetinaFace labels are: ``# <event>/<name>.jpg`` then one line per
face of the official file, ``invalid`` faces included. Train (``--format train``, the default for a file
named ``*train*``): ``x y w h`` + five landmarks (``x y flag``) + one score, all ``-1.0`` (missing) unless
``--landmarks`` names a RetinaFace ``label.txt`` whose points are merged by image name and box; val:
``x y w h`` only; an image without faces is written ``0 0 0 0``; the test file list gives images only.
Images are linked (absolute symlinks) into ``<output>/images``, or copied with ``--copy``. Every image must
be present (``--only_present`` keeps the ones found and says how many are left out); nothing is
overwritten without ``--overwrite``. Check the result with ``python -m rcnn.dataset.check <output>``.
"""
import argparse
import logging
import os
import shutil
import sys

from rcnn.dataset.retinaface import parse_label_file, unsafe_image_path
from rcnn.fileio import atomic_open, refuse_symlink, same_file_or_inside
from rcnn.cli import HelpFormatter

__all__ = ['read_bbx_gt', 'read_filelist', 'convert', 'main']
logger = logging.getLogger('convert_wider')
MISSING_POINTS = ' '.join(['-1.0'] * 16)  # 5 x (x y flag) + the score: no landmarks


class ConvertError(ValueError):
    """A malformed official file or an inconsistent request, with the file and line."""


def read_bbx_gt(path):
    """wider_face_*_bbx_gt.txt -> [(image path, [(x, y, w, h, invalid, line) ...], line)]."""
    out = []
    with open(path, 'r', encoding='utf-8-sig', errors='replace') as f:
        lines = [ln.strip() for ln in f]
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name, where = lines[i], i + 1
        if unsafe_image_path(name) or not name.lower().endswith(('.jpg', '.jpeg', '.png')):
            raise ConvertError('%s:%d: expected an image path (<event>/<name>.jpg), got %r' % (path, where, name[:80]))
        try:
            count = int(lines[i + 1])
        except (IndexError, ValueError):
            raise ConvertError('%s:%d: expected the face count of %s' % (path, where + 1, name)) from None
        if count < 0:
            raise ConvertError('%s:%d: face count %d of %s is negative' % (path, where + 1, count, name))
        rows = lines[i + 2:i + 2 + max(count, 1)]  # an image without faces has one line of zeros
        if len(rows) < max(count, 1):
            raise ConvertError('%s:%d: %s says %d faces but the file ends' % (path, where + 1, name, count))
        faces = []
        for k, row in enumerate(rows[:count]):
            try:
                values = [int(float(v)) for v in row.split()]
            except (ValueError, OverflowError):  # OverflowError: inf, 1e400
                raise ConvertError('%s:%d: not a list of finite numbers: %r' % (path, where + 2 + k, row[:60])) \
                    from None
            if len(values) != 10:
                raise ConvertError('%s:%d: expected 10 numbers (x1 y1 w h blur expression illumination invalid '
                                   'occlusion pose), got %d' % (path, where + 2 + k, len(values)))
            faces.append((values[0], values[1], values[2], values[3], values[7], where + 2 + k))
        out.append((name, faces, where))
        i += 2 + max(count, 1)
    return _no_repeats(out, path)


def _no_repeats(entries, path):
    first = {}
    for name, _, where in entries:
        if name in first:
            raise ConvertError('%s:%d: %s is listed twice (first at line %d)' % (path, where, name, first[name]))
        first[name] = where
    return entries


def read_filelist(path):
    """wider_face_test_filelist.txt -> [(image path, None, line)] (no ground truth)."""
    out = []
    with open(path, 'r', encoding='utf-8-sig', errors='replace') as f:
        for lineno, line in enumerate(f, start=1):
            name = line.strip()
            if not name:
                continue
            if unsafe_image_path(name):
                raise ConvertError('%s:%d: image path %r %s' % (path, lineno, name, unsafe_image_path(name)))
            out.append((name, None, lineno))
    return _no_repeats(out, path)


def landmark_lines(path):
    """{image path: {(x, y, w, h): the 16 values after the box}} of a RetinaFace train label.txt."""
    with open(path, 'r', encoding='utf-8-sig', errors='replace') as f:
        lines = f.read().split('\n')  # numbered as the label reader numbers them (not splitlines: \x1c, \x85...)
    found = {}
    for rec in parse_label_file(path, with_landmarks=True):
        faces = {}
        for line, box in zip(rec['lines'], rec['boxes_xywh']):
            values = lines[line - 1].split()
            if len(values) >= 19:
                faces[tuple(int(round(v)) for v in box)] = ' '.join((values + ['-1.0'])[4:20])
        found[rec['path']] = faces
    return found


def _check_image_tree(image_root, names, images, copy, overwrite):
    """Before anything is written: no folder on the way to an image is a link (a planted
    `images/0--Parade -> elsewhere/` would take the copies or links there), and an image already in place is
    this run's (the link to its source, or an identical copy) unless --overwrite: a user's own photo under the
    same name is neither replaced nor silently given the official boxes of another."""
    import filecmp
    root = os.path.abspath(image_root)
    if os.path.islink(root):
        raise ConvertError('%s is a symbolic link: the images are written into a folder of their own' % image_root)
    for name in names:
        dst = os.path.join(root, name)
        folder = os.path.dirname(dst)
        while folder != root:
            if os.path.islink(folder):
                raise ConvertError('%s is a symbolic link (to %s): not writing images through it'
                                   % (folder, os.path.realpath(folder)))
            folder = os.path.dirname(folder)
        if not os.path.lexists(dst) or overwrite:
            continue
        src = os.path.abspath(os.path.join(images, name))
        ours = (os.path.islink(dst) and os.readlink(dst) == src) if not copy else \
            (not os.path.islink(dst) and os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False))
        if not ours:
            raise ConvertError('%s already exists and is not %s: pass --overwrite to replace it'
                               % (dst, 'a link to %s' % src if not copy else 'a copy of %s' % src))


def convert(entries, images, output, fmt, copy=False, only_present=False, landmarks=None, overwrite=False,
            source='the official file'):
    """Write <output>/label.txt and <output>/images; returns counts."""
    kept, missing, merged = [], [], 0
    for name, faces, where in entries:
        src = os.path.join(images, name)
        if os.path.isfile(src):
            kept.append((name, faces, where))
        else:
            missing.append((name, where))
    if missing and not only_present:
        raise ConvertError('%d of the %d images listed are not in --images %s (e.g. %s, listed at line %d): a '
                           'half-copied download? --only_present converts the ones found'
                           % (len(missing), len(entries), images, missing[0][0], missing[0][1]))
    if not kept:
        raise ConvertError('none of the %d images listed is in --images %s' % (len(entries), images))
    lines, box_lines, no_area = [], 0, 0
    for name, faces, _ in kept:
        lines.append('# %s' % name)
        if faces is None:
            continue
        if not faces:
            lines.append('0 0 0 0')
            continue
        points = (landmarks or {}).get(name, {})
        for x, y, w, h, _invalid, line in faces:
            if w < 0 or h < 0:  # in the official files (val: one face); no box to train on
                logger.warning('%s:%d: negative face width or height (%d x %d): %s', source, line, w, h,
                               'left out (no box to train on)' if fmt == 'train' else
                               'kept, as the official evaluation keeps it (it can never be matched)')
                if fmt == 'train':
                    continue
            if fmt == 'train':
                extra = points.get((x, y, w, h))
                merged += extra is not None
                lines.append('%d %d %d %d %s' % (x, y, w, h, extra or MISSING_POINTS))
            else:
                lines.append('%d %d %d %d' % (x, y, w, h))
            box_lines += 1
            no_area += w <= 0 or h <= 0
    image_root = os.path.join(output, 'images')
    _check_image_tree(image_root, [name for name, _, _ in kept], images, copy, overwrite)
    os.makedirs(image_root, exist_ok=True)
    for name, _, _ in kept:
        dst = os.path.join(image_root, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        src = os.path.abspath(os.path.join(images, name))
        if os.path.lexists(dst):
            if not overwrite and (copy or os.path.islink(dst)):
                continue  # this run's own link or copy (checked above)
            os.remove(dst)  # --overwrite: the user asked; a link is removed, never followed
        if copy:
            shutil.copyfile(src, dst)
        else:
            os.symlink(src, dst)
    with atomic_open(os.path.join(output, 'label.txt'), what='label file') as f:
        f.write('\n'.join(lines) + '\n')
    return {'images': len(kept), 'box_lines': box_lines, 'faces': box_lines - no_area, 'no_area': no_area,
            'missing': len(missing), 'landmarks_merged': merged}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--bbx_gt', help='the official wider_face_{train,val}_bbx_gt.txt')
    src.add_argument('--filelist', help='the official wider_face_test_filelist.txt (images only)')
    p.add_argument('--images', required=True, help='the official WIDER_{train,val,test}/images folder')
    p.add_argument('--output', required=True, help='the split folder to write, e.g. data/retinaface/train')
    p.add_argument('--format', choices=['train', 'val'], default=None,
                   help='label columns: train (box + 5 landmarks + score) or val (box); default from the file name')
    p.add_argument('--landmarks', default=None, help='a RetinaFace train label.txt whose landmarks are merged in')
    p.add_argument('--copy', action='store_true', help='copy the images instead of linking them')
    p.add_argument('--only_present', action='store_true', help='convert the images found, leave the rest out')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing <output>/label.txt and images of the same names')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    source = args.bbx_gt or args.filelist
    fmt = args.format or ('train' if 'train' in os.path.basename(source) else 'val')
    if args.landmarks and fmt != 'train':
        p.error('--landmarks needs the train format (--format train)')
    for flag, path, kind in (('--bbx_gt' if args.bbx_gt else '--filelist', source, 'file'),
                             ('--images', args.images, 'folder'), ('--landmarks', args.landmarks, 'file')):
        if path and not (os.path.isfile(path) if kind == 'file' else os.path.isdir(path)):
            p.exit(2, 'error: %s: no such %s: %s\n' % (flag, kind, path))
    if same_file_or_inside(args.output, args.images) or same_file_or_inside(args.images, args.output):
        p.exit(2, 'error: --output %s and --images %s overlap: the converted split goes into a folder of its own\n'
               % (args.output, args.images))
    label = os.path.join(args.output, 'label.txt')
    if os.path.exists(label) and not args.overwrite:
        p.exit(2, 'error: %s exists: pass --overwrite to replace it\n' % label)
    try:
        refuse_symlink(label)
        entries = read_bbx_gt(args.bbx_gt) if args.bbx_gt else read_filelist(args.filelist)
        points = landmark_lines(args.landmarks) if args.landmarks else None
        counts = convert(entries, args.images, args.output, fmt, args.copy, args.only_present, points,
                         args.overwrite, source)
    except (ConvertError, OSError, ValueError) as err:
        p.exit(2, 'error: %s\n' % err)
    logger.info('%s: %d images, %d box lines (%d faces, %d boxes without area, kept as the official file has them: '
                'check and training skip them) (%s format%s)%s; images %s into %s', label, counts['images'],
                counts['box_lines'], counts['faces'], counts['no_area'], fmt,
                ', %d faces with merged landmarks' % counts['landmarks_merged'] if points is not None else '',
                ', %d listed images not found and left out' % counts['missing'] if counts['missing'] else '',
                'copied' if args.copy else 'linked', os.path.join(args.output, 'images'))
    logger.info('check it with: python -m rcnn.dataset.check %s', args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
