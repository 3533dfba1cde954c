"""Face tracks and anonymisation, against the truth of a video made here: a pan and zoom across a real photo,
where every face's box in every frame follows from the camera path."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.processing.anonymize import anonymize, enlarge
from rcnn.processing.bbox_transform import bbox_overlaps
from rcnn.processing.track import FaceTracker

FRAME = (640, 480)


@pytest.fixture(scope='module')
def detector(mnet25_prefix):
    from retinaface import RetinaFace
    return RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net3')


@pytest.fixture(scope='module')
def pan(detector):
    """(frames, true boxes per frame (F, faces, 4), visible (F, faces) bool): a 24-frame pan to the right and down
    across t1.jpg zooming in from 1.0x to 1.25x; the true boxes are t1's faces (found on the whole photo)
    carried through each frame's transform."""
    img = cv2.imread(shared_path('images', 't1.jpg'))
    faces, _ = detector.detect(img, 0.8, [1.0])
    assert len(faces) == 6
    frames, truth = [], []
    for i in range(24):
        t = i / 23
        zoom = 1.0 + 0.25 * t
        x0, y0 = t * (img.shape[1] - FRAME[0] / zoom), 150 * t
        m = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]])
        frames.append(cv2.warpAffine(img, m, FRAME, flags=cv2.INTER_LINEAR))
        truth.append((faces[:, :4] - [x0, y0, x0, y0]) * zoom)
    truth = np.array(truth)
    visible = ((truth[..., 0] >= 0) & (truth[..., 1] >= 0) & (truth[..., 2] < FRAME[0]) & (truth[..., 3] < FRAME[1]))
    return frames, truth, visible


def check_identities(per_frame, truth, visible):
    """per_frame: list of (boxes (N, 4), ids (N,)). No identity switch while a face stays in view; every track
    belongs to one true face; as many tracks as faces that were tracked."""
    ids_of = {}
    for (boxes, ids), true, vis in zip(per_frame, truth, visible):
        clipped = np.clip(true, 0, [FRAME[0] - 1, FRAME[1] - 1] * 2)
        iou = bbox_overlaps(boxes, clipped) if len(boxes) else np.zeros((0, len(true)))
        for k, track in enumerate(ids):
            assert iou[k].max() >= 0.3, 'track %d follows no face' % track
            face = int(iou[k].argmax())
            ids_of.setdefault(face, set()).add(int(track))
        for face in np.flatnonzero(vis):
            hits = [int(ids[k]) for k in range(len(ids)) if iou[k, face] >= 0.5]
            assert len(hits) <= 1
    owners = {}
    for face, tracks in ids_of.items():
        assert len(tracks) == 1, 'face %d changed identity: tracks %s' % (face, sorted(tracks))
        for track in tracks:
            owners.setdefault(track, set()).add(face)
    assert all(len(faces) == 1 for faces in owners.values())
    return len(owners), len(ids_of)


def test_tracker_keeps_one_id_per_face_through_a_pan_and_zoom(detector, pan):
    frames, truth, visible = pan
    tracker = FaceTracker()
    per_frame = []
    for frame in frames:
        faces, _ = detector.detect(frame, tracker.low_thresh, [1.0])
        ids = tracker.update(faces)
        per_frame.append((faces[ids >= 0, :4], ids[ids >= 0]))
    tracks, faces_seen = check_identities(per_frame, truth, visible)
    assert faces_seen >= 5  # the pan shows at least five of t1's six faces whole
    assert tracker.next_id - 1 == tracks == faces_seen  # no track started twice, none without a face


def test_a_missed_detection_keeps_the_face_covered(detector, pan):
    """A face the detector misses for two frames stays in `covered()` at its predicted place."""
    frames, truth, visible = pan
    tracker = FaceTracker()
    target = None
    for i, frame in enumerate(frames[:10]):
        faces, _ = detector.detect(frame, tracker.low_thresh, [1.0])
        if i in (8, 9):  # the detector "misses" the target face: its detection is taken out
            keep = bbox_overlaps(faces[:, :4], truth[i][target:target + 1])[:, 0] < 0.5
            faces = faces[keep]
        ids = tracker.update(faces)
        if i == 7:
            target = int(np.flatnonzero(visible[7:11].all(axis=0))[0])  # in view through frame 10
            track = int(ids[bbox_overlaps(faces[:, :4], truth[i][target:target + 1])[:, 0].argmax()])
        if i in (8, 9):
            covered = {c[0]: np.array(c[1:]) for c in tracker.covered()}
            assert track in covered
            assert bbox_overlaps(covered[track], truth[i][target:target + 1])[0, 0] >= 0.5
    faces, _ = detector.detect(frames[10], tracker.low_thresh, [1.0])
    ids = tracker.update(faces)
    assert track in ids.tolist()  # it comes back under the same ID


def test_tracker_refuses_bad_settings():
    with pytest.raises(ValueError, match='low_thresh'):
        FaceTracker(high_thresh=0.3, low_thresh=0.5)
    with pytest.raises(ValueError, match='max_missed'):
        FaceTracker(max_missed=-1)


@pytest.mark.parametrize('method', ['blur', 'pixelate', 'fill'])
def test_anonymised_photos_have_no_detectable_face_and_nothing_else_changed(detector, method):
    from retinaface import single_scale
    for name in ('t1.jpg', 't2.jpg', 't3.jpg', 't4.jpg', 't5.jpg', 't6.jpg', 'masked_t1.jpg'):
        img = cv2.imread(shared_path('images', name))
        scale = [single_scale(img.shape)]
        faces, _ = detector.detect(img, 0.5, scale)
        out = anonymize(img, faces, method)
        assert len(detector.detect(out, 0.8, scale)[0]) == 0, name  # the CLI's default threshold
        inside = np.zeros(img.shape[:2], dtype=bool)
        for x1, y1, x2, y2 in enlarge(faces[:, :4], img.shape):
            inside[y1:y2, x1:x2] = True
        assert np.array_equal(out[~inside], img[~inside])
        assert (np.abs(out[inside].astype(int) - img[inside]).sum(axis=1) > 0).mean() > 0.5  # really covered


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'retinaface.py')] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=ROOT)


def write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, FRAME)
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_cli_tracks_a_video_with_one_best_crop_per_track(mnet25_prefix, pan, tmp_path):
    frames, truth, visible = pan
    video = tmp_path / 'pan.avi'
    write_video(video, frames)
    res = run_cli('--prefix', mnet25_prefix, '--video', video, '--output', tmp_path / 'tracked.avi', '--json',
                  tmp_path / 'pan.jsonl', '--scale', '1.0', '--track', '--crops', tmp_path / 'crops')
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in open(tmp_path / 'pan.jsonl')]
    assert len(lines) == len(frames)
    per_frame = [(np.array([f['box'] for f in line['faces']]).reshape(-1, 4),
                  np.array([f['track'] for f in line['faces']], dtype=int)) for line in lines]
    tracks, faces_seen = check_identities(per_frame, truth, visible)
    crops = sorted(os.listdir(tmp_path / 'crops'))
    assert len(crops) == tracks == faces_seen >= 5
    assert crops == sorted('pan.avi.track%d.jpg' % t for t in {int(t) for _, ids in per_frame for t in ids})
    assert all(cv2.imread(str(tmp_path / 'crops' / c)).shape == (112, 112, 3) for c in crops)


def test_cli_anonymises_photos_folders_and_videos_without_touching_inputs(mnet25_prefix, pan, tmp_path):
    photo = shared_path('images', 't4.jpg')
    before = open(photo, 'rb').read()
    out = tmp_path / 't4_anon.png'
    res = run_cli('--prefix', mnet25_prefix, '--image', photo, '--output', out, '--anonymize', 'pixelate')
    assert res.returncode == 0, res.stderr[-3000:]
    assert open(photo, 'rb').read() == before
    from retinaface import RetinaFace, single_scale
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    anon = cv2.imread(str(out))
    assert len(det.detect(anon, 0.8, [single_scale(anon.shape)])[0]) == 0
    record = json.load(open(tmp_path / 't4_anon.json'))[photo]
    assert len(record) >= 25  # the faces it covered are listed

    res = run_cli('--prefix', mnet25_prefix, '--image', photo, '--output', photo, '--anonymize', 'fill',
                  '--overwrite')
    assert res.returncode == 2 and 'input' in res.stderr and open(photo, 'rb').read() == before

    frames, truth, visible = pan
    video = tmp_path / 'pan.avi'
    write_video(video, frames[:8])
    res = run_cli('--prefix', mnet25_prefix, '--video', video, '--output', tmp_path / 'anon.avi', '--scale', '1.0',
                  '--anonymize', 'blur', '--track')
    assert res.returncode == 0, res.stderr[-3000:]
    cap = cv2.VideoCapture(str(tmp_path / 'anon.avi'))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert len(det.detect(frame, 0.8, [1.0])[0]) == 0
        n += 1
    assert n == 8
