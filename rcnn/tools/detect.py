"""Detect faces in images, a folder or a video; draw them, save the detections as JSON, cut aligned crops.

    python retinaface.py --prefix model/mnet.25 --epoch 0 --image photo.jpg --output out.jpg
    python -m rcnn.tools.detect --prefix model/mnet.25 --image photos/ --output drawn/ --crops faces/
    python retinaface.py --prefix model/mnet.25 --video in.mp4 --output out.mp4 --json out.jsonl
    retinaface --prefix model/mnet.25.onnx --image photo.jpg --output out.jpg   # installed; ONNX Runtime only

One input image: ``--output`` is the drawing's file name and the JSON is written beside it (``out.json``).
A folder: ``--output`` is a folder with one drawing per image and ``detections.json``. A video: ``--output``
is the drawn video (same frame rate and size; .mp4 or .avi), ``--json`` one JSON line per frame, frames
detected in batches of ``--batch``. ``--crops DIR`` writes one aligned ArcFace crop per face
(``<image file name>.face<i>.jpg``, e.g. ``a.jpg.face0.jpg`` and ``a.png.face0.jpg`` for two photos; for a video
``<video file name>.f<frame>.face<i>.jpg``), ``--crop_size`` pixels square, and the JSON names each face's crop.
``--track`` (a video) gives every face a track ID that stays with the person (ByteTrack-style association,
rcnn/processing/track.py), drawn and written in the JSON lines; with ``--crops`` it keeps one crop per track, the
largest frontal one (``<video file name>.track<id>.jpg``). ``--anonymize blur|pixelate|fill`` covers every face
(the box grown by ``--margin``) instead of drawing it, in images, folders and videos; with ``--track`` a face
stays covered through frames where the detector misses it, for the track's lifetime.
Nothing is overwritten without ``--overwrite``, no input is ever written over (paths are compared after
resolving links), and no output is written through a symlink. An image that cannot be read or detected on
is skipped and reported; the others are kept.
"""
import argparse
import glob
import json
import logging
import os
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from retinaface import IMAGE_EXTENSIONS, RetinaFace, draw_detections, read_image, single_scale
from rcnn.compat import engine_errors
from rcnn.core.checkpoint import CheckpointError
from rcnn.interrupt import DeferredInterrupt
from rcnn.processing.anonymize import MARGIN, METHODS as ANONYMIZE_METHODS, anonymize
from rcnn.processing.track import FaceTracker
from rcnn.fileio import (UnsafeOutputError, atomic_open, atomic_path, check_writable_dir, refuse_symlink,
                         write_error)
from rcnn.cli import HelpFormatter, cli_words

__all__ = ['main', 'detections_to_json']
logger = logging.getLogger('detect')


def detections_to_json(faces, landmarks, crops=None, ids=None):
    """One dict per face; `crops` (the crop file of each face, in order) adds 'crop', `ids` 'track'."""
    out = []
    for k, (f, lm) in enumerate(zip(faces, landmarks if landmarks is not None else [None] * len(faces))):
        det = {'box': [round(float(v), 3) for v in f[:4]], 'score': round(float(f[4]), 6)}
        if ids is not None:
            det['track'] = int(ids[k])
        if len(f) > 5:
            det['mask'] = round(float(f[5]), 6)  # Anti-Cov models: probability that the face wears a mask
        det['landmarks'] = None if lm is None else [[round(float(x), 3), round(float(y), 3)] for x, y in lm]
        if crops:
            det['crop'] = crops[k]
        out.append(det)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Detect faces and draw them.',
                                formatter_class=HelpFormatter)
    p.add_argument('--prefix', required=True, help='checkpoint prefix, e.g. model/mnet.25, or an ONNX export, '
                                                   'e.g. model/mnet.25.onnx (runs on ONNX Runtime, without MXNet)')
    p.add_argument('--epoch', type=int, default=0, help='checkpoint epoch (unused for an .onnx model)')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--image', help='an image file or a folder of images')
    src.add_argument('--video', help='a video file (anything OpenCV reads)')
    p.add_argument('--output', default=None, help='output image file (one input image), folder (a folder) or video '
                                                  '(--video); default: detections, detections.mp4 for a video')
    p.add_argument('--json', default=None, help='--video: write one JSON line per frame to this file')
    p.add_argument('--crops', default=None, help='folder for aligned face crops (ArcFace 5-point template)')
    p.add_argument('--crop_size', type=int, default=112, help='side of the aligned crops (pixels)')
    p.add_argument('--batch', type=int, default=8, help='--video: frames per detect_batch call')
    p.add_argument('--network', default='net3', help='anchor preset of the model')
    p.add_argument('--gpu', type=int, default=-1, help='GPU id; -1 for the CPU')
    p.add_argument('--thresh', '--threshold', dest='thresh', type=float, default=None,
                   help='score threshold (default 0.8; 0.5 with --anonymize, which would rather cover too much)')
    p.add_argument('--scale', type=float, default=0.0,
                   help='resize factor; 0 = the original demo rule (short side 1024, long side <= 1980). '
                        "RetinaFace.detect()'s default is scales=[1.0]: pass --scale 1.0 for the same faces")
    p.add_argument('--flip', action='store_true', help='also detect on the mirrored image')
    p.add_argument('--nms', type=float, default=0.4, help='NMS IoU threshold')
    p.add_argument('--mask_thresh', type=float, default=0.2,
                   help='Anti-Cov models (--network net3l): faces with a mask score at or above this are drawn green')
    p.add_argument('--track', action='store_true',
                   help='--video: a track ID per face across frames (JSON "track"); with --crops one crop per track')
    p.add_argument('--track_keep', type=int, default=30,
                   help='--track: frames a track survives without a detection before it ends')
    p.add_argument('--anonymize', choices=ANONYMIZE_METHODS, default=None,
                   help='cover every face (blur, pixelate or fill) instead of drawing it')
    p.add_argument('--margin', type=float, default=MARGIN,
                   help='--anonymize: each side of a box grows by this fraction of its size before it is covered')
    p.add_argument('--overwrite', action='store_true', help='replace drawings and JSON that already exist')
    args = p.parse_args(argv)
    if args.thresh is None:
        args.thresh = 0.5 if args.anonymize else 0.8
    if not (args.scale == 0 or 0.01 <= args.scale <= 20):  # NaN fails too
        p.error('--scale must lie in [0.01, 20] (or be 0 for the demo rule), got %g' % args.scale)
    if not 0.0 <= args.thresh <= 1.0:
        p.error('--thresh must lie in [0, 1], got %g' % args.thresh)
    if not 0.0 <= args.mask_thresh <= 1.0:
        p.error('--mask_thresh must lie in [0, 1] (a mask probability), got %g' % args.mask_thresh)
    if not 16 <= args.crop_size <= 1024:
        p.error('--crop_size must lie in [16, 1024] pixels, got %d' % args.crop_size)
    if args.batch < 1:
        p.error('--batch must be >= 1, got %d' % args.batch)
    if args.json and not args.video:
        p.error('--json is for --video (images write their JSON next to the drawings)')
    if args.track and not args.video:
        p.error('--track is for --video (a track follows a face from frame to frame)')
    if args.track_keep < 0:
        p.error('--track_keep must be >= 0 frames, got %d' % args.track_keep)
    if not 0.0 <= args.margin <= 2.0:
        p.error('--margin must lie in [0, 2] (a fraction of the box size per side), got %g' % args.margin)
    if args.output is None:
        args.output = 'detections.mp4' if args.video else 'detections'
    return p, args


RESUME_KEYS = ('prefix', 'epoch', 'network', 'thresh', 'scale', 'flip', 'nms', 'mask_thresh', 'crops', 'crop_size',
               'batch', 'anonymize', 'margin', 'track', 'track_keep')


def interrupted_run(json_path, args):
    """Whether `json_path` belongs to a run of these very settings that Ctrl-C ended (its marker
    <json>.partial, written on the interruption and removed when a run completes): only then does a rerun go on
    from it; a completed run's outputs, or another setting's, still need --overwrite."""
    try:
        with open(json_path + '.partial') as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return False
    return marker == {k: getattr(args, k, None) for k in RESUME_KEYS}


def mark_interrupted(json_path, args):
    with atomic_open(json_path + '.partial', what='interrupted-run marker') as f:
        json.dump({k: getattr(args, k, None) for k in RESUME_KEYS}, f)


def clear_interrupted(json_path):
    if os.path.lexists(json_path + '.partial') and not os.path.islink(json_path + '.partial'):
        os.remove(json_path + '.partial')


def finished_images(json_path, inputs, out_paths):
    """{input: its JSON record} of the inputs an earlier (interrupted) run of this command finished: listed in
    its JSON, with the drawing and every crop it names on disk."""
    try:
        with open(json_path) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    done = {}
    for path, out_path in zip(inputs, out_paths):
        rec = recorded.get(path)
        if isinstance(rec, list) and os.path.isfile(out_path) and all(
                isinstance(f, dict) and os.path.isfile(f.get('crop', out_path)) for f in rec):
            done[path] = rec
    return done


def plan_outputs(parser, args):
    """(inputs, drawing paths, JSON path, {input: record} finished by an interrupted run), refused with one
    sentence when an output would replace an input, an existing file (without --overwrite; the outputs of an
    interrupted run of this command are its own, and it resumes), or go through a symlink."""
    if os.path.isdir(args.image):
        inputs = sorted(os.path.join(args.image, f) for f in os.listdir(args.image)
                        if f.lower().endswith(IMAGE_EXTENSIONS))
        if not inputs:
            parser.error('--image %s holds no image files (%s)' % (args.image, ' '.join(IMAGE_EXTENSIONS)))
        if os.path.isfile(args.output):
            parser.error('--output %s is a file; with a folder of images it must be a folder' % args.output)
        if os.path.realpath(args.output) == os.path.realpath(args.image):
            parser.error('--output is the input folder %s (%s): the drawings would replace the images'
                         % (args.output, os.path.realpath(args.image)))
        out_paths = [os.path.join(args.output, os.path.basename(p)) for p in inputs]  # a.jpg and a.png: two
        json_path = os.path.join(args.output, 'detections.json')
    elif os.path.isfile(args.image):
        inputs = [args.image]
        ext = os.path.splitext(args.output)[1].lower()
        if ext and ext not in IMAGE_EXTENSIONS:
            parser.error('--output %s: not an image file name (%s)' % (args.output, ' '.join(IMAGE_EXTENSIONS)))
        out_paths = [args.output if ext else args.output + '.jpg']
        json_path = os.path.splitext(out_paths[0])[0] + '.json'
    else:
        parser.error('--image: no such file or folder: %s' % args.image)
    real_inputs = {os.path.realpath(p) for p in inputs}
    for path in out_paths + [json_path]:
        if os.path.realpath(path) in real_inputs:
            parser.error('--output: %s is an input image (%s): it would be replaced by the drawing'
                         % (path, os.path.realpath(path)))
        try:
            refuse_symlink(path)
        except UnsafeOutputError as err:
            parser.exit(2, 'error: %s\n' % err)
    done = finished_images(json_path, inputs, out_paths) if (
        not args.overwrite and len(inputs) > 1 and interrupted_run(json_path, args)) else {}
    existing = [o for p, o in zip(inputs, out_paths) if p not in done and os.path.exists(o)]
    if not done and os.path.exists(json_path):  # a resumed run's JSON is its own
        existing.append(json_path)
    existing += existing_crops(args.crops, [os.path.basename(p) for p in inputs if p not in done])
    if existing and not args.overwrite:
        parser.exit(2, 'error: %s already exist%s (e.g. %s): pass --overwrite to replace them, or choose another '
                       '--output\n' % ('%d outputs' % len(existing) if len(existing) > 1 else existing[0],
                                       '' if len(existing) > 1 else 's', existing[0]))
    try:
        check_writable_dir(os.path.dirname(os.path.abspath(json_path)))
    except OSError as err:
        parser.exit(2, 'error: --output: %s\n' % err)
    if done:
        logger.info('resuming: %d of the %d images were finished by an earlier run (%s)', len(done), len(inputs),
                    json_path)
    return inputs, out_paths, json_path, done


def existing_crops(folder, names):
    """Crop files of these input file names already in `folder` (refused without --overwrite)."""
    if not folder or not os.path.isdir(folder):
        return []
    found = []
    for name in names:
        for pattern in ('.*face*.jpg', '.track*.jpg'):
            found += glob.glob(os.path.join(glob.escape(folder), glob.escape(name) + pattern))
    return sorted(found)


def check_crops_folder(parser, folder, inputs):
    if not folder:
        return
    if os.path.exists(folder) and not os.path.isdir(folder):
        parser.exit(2, 'error: --crops %s is a file, not a folder\n' % folder)
    real_inputs = {os.path.realpath(os.path.dirname(p)) for p in inputs}
    if os.path.realpath(folder) in real_inputs:
        parser.exit(2, 'error: --crops %s is the folder of the input images: choose another folder\n' % folder)
    try:
        check_writable_dir(folder, '--crops folder')
    except OSError as err:
        parser.exit(2, 'error: %s\n' % err)


def write_image(path, img, what='drawing'):
    with atomic_path(path, what) as tmp:
        if not cv2.imwrite(tmp, img):
            raise write_error(path, 'OpenCV could not write %s' % path)


def write_crops(detector, img, landmarks, folder, name, size):
    """One aligned crop per face: <folder>/<name>.face<i>.jpg (`name` an input's whole file name, so a.jpg and
    a.png never share crops); returns the paths, face by face."""
    if not folder or landmarks is None or not len(landmarks):
        return []
    paths = []
    for i, crop in enumerate(detector.align(img, landmarks, size)):
        path = os.path.join(folder, '%s.face%d.jpg' % (name, i))
        write_image(path, crop, 'face crop')
        paths.append(path)
    return paths


def main(argv=None):
    parser, args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    if args.video:
        return run_video(parser, args)
    inputs, out_paths, json_path, done = plan_outputs(parser, args)
    check_crops_folder(parser, args.crops, inputs)
    detector = load_detector(parser, args)
    results, skipped = {}, []
    with DeferredInterrupt() as stop:
        for path, out_path in zip(inputs, out_paths):
            if stop.requested:
                break
            if path in done:
                results[path] = done[path]
                continue
            if not detect_one(parser, args, detector, path, out_path, results, skipped):
                continue
            if len(results) % JSON_EVERY == 0 and len(inputs) > 1:
                write_json(parser, json_path, results)
    interrupted = stop.requested
    if interrupted and results:
        write_json(parser, json_path, results)
        mark_interrupted(json_path, args)
        logger.warning('interrupted: %d of the %d images are finished and listed in %s (drawings and crops with '
                       'them); run the same command again to go on with the others', len(results), len(inputs),
                       json_path)
        return 130
    if not results:
        parser.exit(130 if interrupted else 2, 'error: %s\n' % ('interrupted before any image was finished'
                                                               if interrupted else
                    'none of the %d input images could be detected on (%s)'
                    % (len(inputs), '; '.join('%s: %s' % s for s in skipped[:3]))))
    write_json(parser, json_path, results)
    clear_interrupted(json_path)
    logger.info('detections saved to %s', json_path)
    if skipped:
        logger.warning('%d of %d images skipped: %s', len(skipped), len(inputs), ', '.join(p for p, _ in skipped))
    return 0


JSON_EVERY = 25  # a folder run rewrites its JSON every this many images (and at the end, or on Ctrl-C)


def write_json(parser, json_path, results):
    try:
        with atomic_open(json_path, what='detections file') as f:
            json.dump(results, f, indent=1)
    except OSError as err:
        parser.exit(2, 'error: could not write %s: %s\n' % (json_path, err.strerror or err))


def detect_one(parser, args, detector, path, out_path, results, skipped):
    """Detect, draw and crop one image; its record in `results` (True), or its reason in `skipped` (False)."""
    try:
        img = read_image(path)
        scale = args.scale or single_scale(img.shape)
        faces, landmarks = detector.detect(img, args.thresh, scales=[scale], do_flip=args.flip)
    except engine_errors() as err:
        reason = str(err).strip().splitlines()[-1]
        logger.warning('skipping %s: %s', path, reason)
        skipped.append((path, reason))
        return False
    try:
        crops = write_crops(detector, img, landmarks, args.crops, os.path.basename(path), args.crop_size)
        write_image(out_path, render(args, img, faces, landmarks))
    except OSError as err:
        parser.exit(2, 'error: could not write %s: %s\n' % (out_path, err.strerror or err))
    results[path] = detections_to_json(faces, landmarks, crops)
    logger.info('%s: %d faces -> %s%s', path, len(faces), out_path,
                ' (+ %d aligned crops in %s)' % (len(crops), args.crops) if crops else '')
    return True


def render(args, img, faces, landmarks, covered=None, ids=None):
    """The output picture of one image or frame: its faces drawn, or covered with --anonymize (`covered`: the
    boxes to cover, where a tracker also covers faces this frame missed)."""
    if args.anonymize:
        return anonymize(img, faces if covered is None else covered, args.anonymize, args.margin)
    return draw_detections(img, faces, landmarks, args.mask_thresh, ids)


def load_detector(parser, args):
    try:
        return RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu, network=args.network, nms=args.nms)
    except (CheckpointError, ValueError, ImportError) as err:
        parser.exit(2, 'error: %s\n' % cli_words(str(err)))


VIDEO_CODECS = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG'}


def plan_video(parser, args):
    """(capture, fps, (w, h), frames) of --video, with every output checked before any work."""
    if not os.path.isfile(args.video):
        parser.exit(2, 'error: --video: no such file: %s\n' % args.video)
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in VIDEO_CODECS:
        parser.exit(2, 'error: --output %s: a video needs a video file name (%s)\n'
                    % (args.output, ' '.join(sorted(VIDEO_CODECS))))
    outputs = [args.output] + ([args.json] if args.json else [])
    if args.json and os.path.abspath(args.json) == os.path.abspath(args.output):
        parser.exit(2, 'error: --json and --output name the same file (%s): the JSON lines go to a file of their '
                       'own, e.g. %s\n' % (args.output, os.path.splitext(args.output)[0] + '.jsonl'))
    for path in outputs:
        if os.path.isdir(path):
            parser.exit(2, 'error: %s is a folder: --output and --json name files\n' % path)
        if os.path.exists(path) and os.path.samefile(path, args.video):
            parser.exit(2, 'error: %s is the input video: it would be replaced\n' % path)
        try:
            refuse_symlink(path)
        except UnsafeOutputError as err:
            parser.exit(2, 'error: %s\n' % err)
    existing = [p for p in outputs if os.path.exists(p)]
    crops = existing_crops(args.crops, [os.path.basename(args.video)])
    resume = None
    if (existing or crops) and not args.overwrite:
        resume = finished_frames(args, crops)
        if resume is None:
            parser.exit(2, 'error: %s already exists: pass --overwrite to replace it, or choose another --output (an '
                           'interrupted run resumes where its --json lines and video agree%s)\n'
                        % ((existing + crops)[0], '; not with --track, which starts again' if args.track else ''))
    for path in outputs:
        try:
            check_writable_dir(os.path.dirname(os.path.abspath(path)))
        except OSError as err:
            parser.exit(2, 'error: %s\n' % err)
    check_crops_folder(parser, args.crops, [args.video])
    cap = cv2.VideoCapture(args.video)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        parser.exit(2, 'error: --video %s: not a video OpenCV can read (no frame decoded)\n' % args.video)
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 and fps < 1000 else 25.0
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    return cap, fps, (first.shape[1], first.shape[0]), frames, resume or []


def finished_frames(args, crops):
    """The JSON records of the frames an interrupted run of this command finished (frames 0..N-1, each crop it
    names on disk, every crop of this video among them, its drawn video readable for as many frames), or None
    where the outputs are not such a run's."""
    if args.track or not (args.json and os.path.isfile(args.json) and os.path.isfile(args.output) and
                          interrupted_run(args.json, args)):
        return None  # (a tracked run cannot go on: the tracks live in memory)
    records = []
    try:
        with open(args.json) as f:
            for k, line in enumerate(f):
                rec = json.loads(line)
                if not (isinstance(rec, dict) and rec.get('frame') == k and isinstance(rec.get('faces'), list)):
                    return None
                records.append(rec)
    except (OSError, ValueError):
        return None
    listed = [c for r in records for c in r.get('crops') or []]
    if sorted(listed) != sorted(crops) or not all(os.path.isfile(c) for c in listed):
        return None
    cap = cv2.VideoCapture(args.output)
    drawn = 0
    while drawn < len(records) and cap.read()[0]:
        drawn += 1
    cap.release()
    return records if records and drawn == len(records) else None


def faces_from_json(record):
    """(faces (N, 5 or 6), landmarks (N, 5, 2) or None) of one frame's JSON record."""
    faces = np.array([f['box'] + [f['score']] + ([f['mask']] if 'mask' in f else []) for f in record['faces']],
                     dtype=np.float32).reshape(len(record['faces']), -1)
    marks = [f.get('landmarks') for f in record['faces']]
    landmarks = None if not marks or marks[0] is None else np.array(marks, dtype=np.float32)
    return faces, landmarks


TRACK_LOW = 0.3  # --track: weaker detections down to this score may continue a track (never start one)


def crop_rank(detector, face, landmark):
    """How good a crop a face makes: frontal first (check_large_pose), then larger."""
    frontal = landmark is not None and detector.check_large_pose(landmark, face)[0] == 0
    return (frontal, float((face[2] - face[0]) * (face[3] - face[1])))


def best_track_crops(detector, frame, faces, landmarks, ids, best, args):
    """Keep in `best` {track: (rank, crop)} the best crop of each track; the crop file of each face."""
    if not args.crops or landmarks is None:
        return None
    names = []
    for face, landmark, track in zip(faces, landmarks, ids):
        rank = crop_rank(detector, face, landmark)
        if track not in best or rank > best[track][0]:
            best[track] = (rank, detector.align(frame, landmark, args.crop_size)[0])
        names.append(os.path.join(args.crops, '%s.track%d.jpg' % (os.path.basename(args.video), track)))
    return names


def run_video(parser, args):
    cap, fps, size, frames, resume = plan_video(parser, args)
    detector = load_detector(parser, args)
    tracker = FaceTracker(high_thresh=args.thresh, low_thresh=min(TRACK_LOW, args.thresh),
                          max_missed=args.track_keep) if args.track else None
    threshold = tracker.low_thresh if tracker else args.thresh
    best = {}
    codec = VIDEO_CODECS[os.path.splitext(args.output)[1].lower()]
    done = faces_total = 0
    interrupted = False
    t0 = time.time()
    try:
        with DeferredInterrupt() as stop, atomic_path(args.output, 'video') as tmp_video, \
                (atomic_open(args.json, what='JSON lines') if args.json else open(os.devnull, 'w')) as lines:
            writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*codec), fps, size)
            if not writer.isOpened():
                raise OSError('OpenCV cannot write %s with the %s codec (try --output with .avi)' % (args.output,
                                                                                                    codec))
            try:
                bar = tqdm(total=frames, desc='video', unit='frame')
                for record in resume:  # frames an interrupted run finished: drawn again from its JSON lines
                    ok, frame = cap.read()
                    if not ok:
                        raise ValueError('the video has fewer frames than the earlier run finished')
                    faces, landmarks = faces_from_json(record)
                    writer.write(render(args, frame, faces, landmarks))
                    lines.write(json.dumps(record) + '\n')
                    done += 1
                    faces_total += len(faces)
                    bar.update(1)
                if resume:
                    logger.info('resuming after frame %d (finished by an earlier run)', done)
                while not interrupted:
                    batch = []
                    while len(batch) < args.batch:
                        ok, frame = cap.read()
                        if not ok:
                            break
                        batch.append(frame)
                    if not batch:
                        break
                    scale = args.scale or single_scale(batch[0].shape)
                    for frame, (faces, landmarks) in zip(batch, detector.detect_batch(batch, threshold, [scale],
                                                                                      args.flip)):
                        ids = covered = None
                        if tracker is not None:
                            ids = tracker.update(faces)
                            keep = ids >= 0  # weak detections that continued no track are dropped
                            faces, ids = faces[keep], ids[keep]
                            landmarks = None if landmarks is None else landmarks[keep]
                            covered = np.array([c[1:] for c in tracker.covered()]).reshape(-1, 4)
                            crops = best_track_crops(detector, frame, faces, landmarks, ids, best, args)
                        else:
                            crops = write_crops(detector, frame, landmarks, args.crops,
                                                '%s.f%06d' % (os.path.basename(args.video), done), args.crop_size)
                        writer.write(render(args, frame, faces, landmarks, covered, ids))
                        lines.write(json.dumps({'frame': done, 'time': round(done / fps, 4),
                                                'faces': detections_to_json(faces, landmarks, crops, ids),
                                                'crops': None if tracker else crops}) + '\n')
                        done += 1
                        faces_total += len(faces)
                    bar.update(len(batch))
                    interrupted = stop.requested
                bar.close()
            finally:
                writer.release()
            if not done:
                raise ValueError('no frame could be decoded')
            for track, (_, crop) in sorted(best.items()):  # one crop per track, the best seen
                write_image(os.path.join(args.crops, '%s.track%d.jpg' % (os.path.basename(args.video), track)), crop,
                            'face crop')
    except engine_errors() as err:
        parser.exit(2, 'error: %s: frame %d: %s\n' % (args.video, done, str(err).strip().splitlines()[-1]))
    except OSError as err:
        parser.exit(2, 'error: %s\n' % (err.strerror and '%s: %s' % (err.filename or args.output, err.strerror)
                                         or err))
    finally:
        cap.release()
    seconds = time.time() - t0
    logger.info('%d frames, %d faces%s -> %s%s (%.1f frames/s)', done, faces_total,
                ', %d tracks' % (tracker.next_id - 1) if tracker else '', args.output,
                ' + ' + args.json if args.json else '', done / seconds if seconds else 0.0)
    if args.json and interrupted:
        mark_interrupted(args.json, args)
    elif args.json:
        clear_interrupted(args.json)
    if interrupted:
        logger.warning('interrupted at frame %d%s: the video, its JSON lines and crops hold the first %d frames; '
                       'the same command again goes on from there%s', done, ' of %d' % frames if frames else '',
                       done, '' if args.json else ' (only with --json, which records them: else --overwrite)')
        return 130
    if frames and done < frames:
        logger.warning('%s: its header says %d frames but only %d could be decoded: the file may be truncated',
                       args.video, frames, done)
    return 0


if __name__ == '__main__':
    sys.exit(main())
