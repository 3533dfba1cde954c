"""The pipeline around the detector: aligned crops, video, the official WIDER files, test-server submission."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.dataset.retinaface import parse_label_file
from rcnn.processing.align import ARCFACE_112, apply_transform, similarity_transform, template
from retinaface import RetinaFace


def tool(module, args, timeout=600):
    return subprocess.run([sys.executable, '-m', module] + [str(a) for a in args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def cli(args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'retinaface.py')] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


# ------------------------------------------------------------------------------------------ alignment
@pytest.mark.parametrize('angle, scale, shift', [(0.0, 1.0, (0, 0)), (23.0, 2.5, (310.5, -42.0)),
                                                 (-170.0, 0.37, (5.0, 900.0))])
def test_known_similarity_is_recovered_exactly(angle, scale, shift):
    t = np.radians(angle)
    m = np.array([[scale * np.cos(t), -scale * np.sin(t), shift[0]], [scale * np.sin(t), scale * np.cos(t), shift[1]]])
    src = apply_transform(m, ARCFACE_112)
    inverse = similarity_transform(src, ARCFACE_112)
    np.testing.assert_allclose(apply_transform(inverse, src), ARCFACE_112, atol=1e-9)
    np.testing.assert_allclose(similarity_transform(ARCFACE_112, src), m, atol=1e-9)


def test_mirrored_points_give_a_rotation_not_a_reflection():
    mirrored = ARCFACE_112 * [-1, 1] + [112, 0]
    m = similarity_transform(mirrored, ARCFACE_112)
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose(template(224), ARCFACE_112 * 2)
    with pytest.raises(ValueError, match='coincide'):
        similarity_transform(np.ones((5, 2)), ARCFACE_112)


def test_aligned_crops_put_the_landmarks_on_the_template(mnet25_prefix):
    """Each crop of a real photo, detected again (with the context around it), has its landmarks where the
    transform put them (the detector's own noise: a few pixels) and near the template (plus the face's own
    deviation from the template's shape)."""
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    to_mapped, to_template = [], []
    for name in ('t1.jpg', 't2.jpg'):
        img = cv2.imread(shared_path('images', name))
        _, lms = det.detect(img, 0.8, scales=[1024 / min(img.shape[:2])])
        crops = det.align(img, lms, 112)
        assert crops.shape == (len(lms), 112, 112, 3) and crops.dtype == np.uint8
        for points, crop in zip(lms, crops):
            m = similarity_transform(points, template(112))
            context = m.copy()
            context[:, 2] += 112  # the same crop in the middle of a 336 x 336 view
            big = cv2.warpAffine(img, context, (336, 336))
            assert np.abs(big[112:224, 112:224].astype(int) - crop).mean() < 1
            faces, again = det.detect(big, 0.5, scales=[2.0])
            k = int(np.argmin(np.abs((faces[:, 0] + faces[:, 2]) / 2 - 168) + np.abs((faces[:, 1] + faces[:, 3]) / 2
                                                                                     - 168)))
            got = again[k] - 112
            to_mapped.append(np.linalg.norm(got - apply_transform(m, points), axis=1).mean())
            to_template.append(np.linalg.norm(got - template(112), axis=1).mean())
    assert len(to_mapped) > 60
    assert np.median(to_mapped) < 4.0 and np.median(to_template) < 6.0
    with pytest.raises(ValueError, match='no landmarks'):
        det.align(img, None)


# ------------------------------------------------------------------------------------------ CLI: crops, video
def _video(path, frames=9, size=(480, 270)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 6, size)
    assert writer.isOpened()
    for k in range(frames):
        name = ('t1.jpg', 't4.jpg')[(k // 5) % 2]
        writer.write(np.roll(cv2.resize(cv2.imread(shared_path('images', name)), size), 6 * k, axis=1))
    writer.release()


def test_cli_writes_aligned_crops_next_to_the_json(tmp_path, mnet25_prefix):
    out = tmp_path / 'drawn.jpg'
    res = cli(['--prefix', mnet25_prefix, '--image', shared_path('images', 't1.jpg'), '--output', out,
               '--crops', tmp_path / 'crops'])
    assert res.returncode == 0, res.stderr[-2000:]
    faces = json.loads((tmp_path / 'drawn.json').read_text())[shared_path('images', 't1.jpg')]
    crops = sorted(os.listdir(tmp_path / 'crops'))
    assert crops == ['t1.jpg.face%d.jpg' % i for i in range(len(faces))] and len(faces) == 6
    assert [f['crop'] for f in faces] == [str(tmp_path / 'crops' / c) for c in crops]  # which crop is which face
    assert cv2.imread(str(tmp_path / 'crops' / 't1.jpg.face0.jpg')).shape == (112, 112, 3)
    res = cli(['--prefix', mnet25_prefix, '--image', shared_path('images', 't1.jpg'), '--output', tmp_path / 'o2.jpg',
               '--crops', tmp_path / 'crops'])
    assert res.returncode == 2 and 'pass --overwrite' in res.stderr


def test_video_is_drawn_with_json_lines_and_crops(tmp_path, mnet25_prefix):
    video = tmp_path / 'in.mp4'
    _video(video)
    out = tmp_path / 'out.mp4'
    res = cli(['--prefix', mnet25_prefix, '--video', video, '--output', out, '--json', tmp_path / 'out.jsonl',
               '--crops', tmp_path / 'crops', '--scale', 1, '--batch', 4])
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'frames/s' in res.stderr and 'frame/s' in res.stderr  # the summary and the tqdm bar
    lines = [json.loads(line) for line in (tmp_path / 'out.jsonl').read_text().splitlines()]
    assert [r['frame'] for r in lines] == list(range(9)) and all(len(r['faces']) >= 3 for r in lines)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 9 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 480
    assert len(os.listdir(tmp_path / 'crops')) == sum(len(r['faces']) for r in lines)
    # the same frames through detect() one by one give the same faces
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    cap = cv2.VideoCapture(str(video))
    frame = cap.read()[1]
    faces, _ = det.detect(frame, 0.8, scales=[1.0])
    assert len(faces) == len(lines[0]['faces'])


def test_video_bad_input_is_one_sentence(tmp_path, mnet25_prefix):
    video = tmp_path / 'in.mp4'
    _video(video, frames=2)
    fake = tmp_path / 'fake.mp4'
    fake.write_text('not a video')
    base = ['--prefix', mnet25_prefix]
    cases = [(['--video', tmp_path / 'none.mp4', '--output', tmp_path / 'o.mp4'], 'no such file'),
             (['--video', fake, '--output', tmp_path / 'o.mp4'], 'not a video OpenCV can read'),
             (['--video', video, '--output', tmp_path / 'o.xyz'], 'needs a video file name'),
             (['--video', video, '--output', tmp_path / 'missing' / 'sub' / 'o.mp4'], None),
             (['--video', video, '--output', video, '--overwrite'], 'is the input video')]
    if os.geteuid() != 0:
        ro = tmp_path / 'ro'
        ro.mkdir()
        os.chmod(ro, 0o500)
        cases.append((['--video', video, '--output', ro / 'o.mp4'], 'cannot write'))
    for args, msg in cases:
        res = cli(base + args)
        if msg is None:  # a missing output folder is made
            assert res.returncode == 0, res.stderr[-2000:]
            continue
        assert res.returncode == 2 and msg in res.stderr, (args, res.stderr[-1500:])
        assert 'Traceback' not in res.stderr
    (tmp_path / 'taken.mp4').write_bytes(b'x')
    res = cli(base + ['--video', video, '--output', tmp_path / 'taken.mp4'])
    assert res.returncode == 2 and 'pass --overwrite' in res.stderr


# ------------------------------------------------------------------------------------------ dataset tools
def _val_gt():
    return shared_path('widerface', 'wider_face_split', 'wider_face_val_bbx_gt.txt')


def test_convert_official_val_file_and_check(tmp_path):
    images = shared_path('widerface', 'retinaface', 'val', 'images')
    out = tmp_path / 'val'
    res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', _val_gt(), '--images', images, '--output', out])
    assert res.returncode == 2 and 'are not in --images' in res.stderr and 'half-copied' in res.stderr
    res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', _val_gt(), '--images', images, '--output', out,
                                              '--only_present'])
    assert res.returncode == 0, res.stderr[-2000:]
    ours = {r['path']: sorted(map(tuple, r['boxes_xywh'].tolist()))
            for r in parse_label_file(str(out / 'label.txt'), with_landmarks=False)}
    released = {r['path']: sorted(map(tuple, r['boxes_xywh'].tolist()))
                for r in parse_label_file(shared_path('widerface', 'retinaface', 'val', 'label.txt'),
                                          with_landmarks=False)}
    assert ours == released and sum(len(v) for v in ours.values()) == 5374
    assert '0 0 0 0' in (out / 'label.txt').read_text()  # the image without faces, as the released labels
    assert os.path.islink(out / 'images' / next(iter(ours)))
    res = tool('rcnn.dataset.check', [out])
    assert res.returncode == 0 and '307 images (1 without faces)' in res.stdout and 'ok:' in res.stdout
    res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', _val_gt(), '--images', images, '--output', out,
                                              '--only_present'])
    assert res.returncode == 2 and 'pass --overwrite' in res.stderr


def test_converted_val_split_gives_the_same_ap(tmp_path, mnet25_prefix):
    images = shared_path('widerface', 'retinaface', 'val', 'images')
    conv = tmp_path / 'conv'
    assert tool('rcnn.dataset.convert_wider', ['--bbx_gt', _val_gt(), '--images', images, '--output', conv / 'val',
                                               '--only_present']).returncode == 0
    aps = []
    for root in (conv, os.path.dirname(os.path.dirname(images))):
        out = tmp_path / ('ap_%d' % len(aps))
        res = subprocess.run([str(a) for a in (sys.executable, os.path.join(ROOT, 'test.py'), '--prefix',
                                               mnet25_prefix, '--epoch', 0, '--dataset_path', root, '--output', out,
                                               '--mode', 0, '--scales', '0.25', '--gt',
                                               shared_path('widerface', 'ground_truth'))],
                             capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 0, res.stdout[-2000:]
        aps.append(json.loads((out / 'ap.json').read_text())['ap'])
    assert aps[0] == aps[1] and aps[0]['easy'] > 0.3


def test_check_names_broken_images_and_outside_boxes(tmp_path):
    split = tmp_path / 'train'
    (split / 'images' / 'e').mkdir(parents=True)
    img = cv2.resize(cv2.imread(shared_path('images', 't1.jpg')), (200, 100))
    cv2.imwrite(str(split / 'images' / 'e' / 'a.jpg'), img)
    data = open(shared_path('images', 't1.jpg'), 'rb').read()
    (split / 'images' / 'e' / 'cut.jpg').write_bytes(data[:len(data) // 2])
    (split / 'label.txt').write_text('# e/a.jpg\n10 10 20 20\n500 500 10 10\n# e/cut.jpg\n1 1 5 5\n# e/gone.jpg\n'
                                     '1 1 5 5\n')
    res = tool('rcnn.dataset.check', [split])
    assert res.returncode == 2
    assert 'label.txt:4: truncated JPEG' in res.stdout and 'label.txt:6: image not found' in res.stdout
    assert 'label.txt:3: face box 500 500 10 10 lies outside the 200x100 image' in res.stdout
    (split / 'label.txt').write_text('# e/a.jpg\n10 10 20\n')
    res = tool('rcnn.dataset.check', [split])
    assert res.returncode == 2 and 'label.txt:2: expected 4 numbers' in res.stderr


def test_test_split_submission(tmp_path, mnet25_prefix):
    """The test file list -> a split without ground truth -> result files in the official layout + a zip."""
    val = shared_path('widerface', 'retinaface', 'val')
    names = [r['path'] for r in parse_label_file(os.path.join(val, 'label.txt'), with_landmarks=False)][:4]
    filelist = tmp_path / 'wider_face_test_filelist.txt'
    filelist.write_text('\n'.join(names) + '\n')
    res = tool('rcnn.dataset.convert_wider', ['--filelist', filelist, '--images', os.path.join(val, 'images'),
                                              '--output', tmp_path / 'data' / 'test', '--copy'])
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / 'data' / 'test' / 'label.txt').read_text().split('\n')[:2] == ['# ' + names[0], '# ' + names[1]]
    out = tmp_path / 'wout'
    res = subprocess.run([str(a) for a in (sys.executable, os.path.join(ROOT, 'test.py'), '--prefix', mnet25_prefix,
                                           '--epoch', 0, '--dataset_path', tmp_path / 'data', '--image_set', 'test',
                                           '--output', out, '--mode', 0, '--scales', '0.25', '--zip')],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:]
    assert 'no AP can be computed' in res.stdout and not (out / 'ap.json').exists()
    files = sorted(str(p.relative_to(out)) for p in out.rglob('*.txt'))
    assert files == sorted(os.path.splitext(n)[0] + '.txt' for n in names)
    first = (out / files[0]).read_text().splitlines()
    assert first[0] == os.path.splitext(files[0])[0] + '.jpg' and int(first[1]) == len(first) - 2
    with zipfile.ZipFile(str(out) + '.zip') as z:
        assert sorted(z.namelist()) == sorted('wout/' + f for f in files)
    # planted: a link to a secret among the results, a foreign folder: the archive holds exactly the results
    secret = tmp_path / 'secret.key'
    secret.write_text('do not upload')
    os.symlink(str(secret), str(out / os.path.dirname(files[0]) / 'zz_leak.txt'))
    (out / 'junk').mkdir()
    (out / 'junk' / 'passwords.txt').write_text('hunter2')
    res = subprocess.run([str(a) for a in (sys.executable, os.path.join(ROOT, 'test.py'), '--prefix', mnet25_prefix,
                                           '--epoch', 0, '--dataset_path', tmp_path / 'data', '--image_set', 'test',
                                           '--output', out, '--mode', 0, '--scales', '0.25', '--zip', '--overwrite')],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:]
    with zipfile.ZipFile(str(out) + '.zip') as z:
        assert sorted(z.namelist()) == sorted('wout/' + f for f in files)
        assert not any(b'do not upload' in z.read(n) or b'hunter2' in z.read(n) for n in z.namelist())
    assert 'not in the archive' in res.stdout and 'passwords.txt' in res.stdout and 'zz_leak.txt' in res.stdout
    res = subprocess.run([str(a) for a in (sys.executable, os.path.join(ROOT, 'test.py'), '--prefix', mnet25_prefix,
                                           '--epoch', 0, '--dataset_path', tmp_path / 'data', '--image_set', 'test',
                                           '--output', out, '--zip', '--parts', 2, '--part', 0)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and '--zip packs the whole split' in res.stderr
    shutil.rmtree(out)


def test_two_label_paths_that_share_a_result_file_are_refused(tmp_path, mnet25_prefix):
    split = tmp_path / 'data' / 'val'
    for folder in ('a/ev', 'b/ev'):
        (split / 'images' / folder).mkdir(parents=True)
        shutil.copy(shared_path('images', 't1.jpg'), split / 'images' / folder / 'x.jpg')
    (split / 'label.txt').write_text('# a/ev/x.jpg\n1 1 10 10\n# b/ev/x.jpg\n1 1 10 10\n')
    res = subprocess.run([str(a) for a in (sys.executable, os.path.join(ROOT, 'test.py'), '--prefix', mnet25_prefix,
                                           '--epoch', 0, '--dataset_path', tmp_path / 'data', '--output',
                                           tmp_path / 'o', '--mode', 0, '--scales', '0.25')],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and 'label.txt:3: image b/ev/x.jpg would share the result file ev/x.txt with line 1' \
        in res.stdout + res.stderr, (res.stdout + res.stderr)[-2000:]


@pytest.mark.parametrize('size', [True, 40000, 0, 2.5])
def test_align_refuses_a_crop_size_that_is_a_mistake(size):
    """size=True was an OpenCV TypeError, size=40000 allocated 4.8 GB a face: one sentence, before any work."""
    img = np.zeros((100, 100, 3), np.uint8)
    pts = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float64)
    with pytest.raises(ValueError, match='crop size must be an int from 1 to 1024'):
        RetinaFace.align(img, pts, size=size)


def test_crops_of_two_photos_with_one_stem_never_collide(tmp_path, mnet25_prefix):
    """a.jpg and a.png in one folder (and an image named like a crop): each photo keeps its own crops, the JSON
    names every face's crop (before: a.png's crops replaced a.jpg's in the same run)."""
    photos = tmp_path / 'photos'
    photos.mkdir()
    shutil.copy(shared_path('images', 't1.jpg'), photos / 'a.jpg')
    cv2.imwrite(str(photos / 'a.png'), cv2.imread(shared_path('images', 't4.jpg')))
    cv2.imwrite(str(photos / 'a_0.jpg'), cv2.imread(shared_path('images', 't1.jpg')))
    res = cli(['--prefix', mnet25_prefix, '--image', photos, '--output', tmp_path / 'drawn', '--crops',
               tmp_path / 'crops'])
    assert res.returncode == 0, res.stderr[-2000:]
    results = json.loads((tmp_path / 'drawn' / 'detections.json').read_text())
    named = [f['crop'] for faces in results.values() for f in faces]
    assert len(named) == len(set(named)) == len(os.listdir(tmp_path / 'crops'))
    for image, faces in results.items():
        assert all(os.path.basename(f['crop']).startswith(os.path.basename(image) + '.face') for f in faces)


def _bbx(tmp_path, body):
    path = tmp_path / 'wider_face_val_bbx_gt.txt'
    path.write_text(body)
    return path


def test_convert_wider_input_is_checked_by_line(tmp_path):
    ok = '0 0 10 10 0 0 0 0 0 0\n'
    cases = [('0--Parade/a.jpg\n-1\n' + ok, ':2: face count -1 of 0--Parade/a.jpg is negative'),
             ('0--Parade/a.jpg\n1\n0 0 inf 10 0 0 0 0 0 0\n', ':3: not a list of finite numbers'),
             ('0--Parade/a.jpg\n1\n0 0 1e400 10 0 0 0 0 0 0\n', ':3: not a list of finite numbers'),
             ('0--Parade/a.jpg\n1\n' + ok + '0--Parade/a.jpg\n1\n' + ok, ':4: 0--Parade/a.jpg is listed twice '
                                                                        '(first at line 1)')]
    (tmp_path / 'images').mkdir()
    for body, message in cases:
        res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', _bbx(tmp_path, body), '--images', tmp_path / 'images',
                                                  '--output', tmp_path / 'out', '--overwrite'])
        assert res.returncode == 2 and message in res.stderr and 'Traceback' not in res.stderr, (body, res.stderr)


def test_convert_wider_never_writes_through_a_planted_folder_link_or_over_a_user_photo(tmp_path):
    images = tmp_path / 'WIDER_val' / 'images'
    (images / '0--Parade').mkdir(parents=True)
    shutil.copy(shared_path('images', 't1.jpg'), images / '0--Parade' / 'a.jpg')
    bbx = _bbx(tmp_path, '0--Parade/a.jpg\n1\n10 10 50 50 0 0 0 0 0 0\n')
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'a.jpg').write_bytes(b'my own file')
    out = tmp_path / 'out'
    (out / 'images').mkdir(parents=True)
    os.symlink(str(victim), str(out / 'images' / '0--Parade'))
    for extra in ([], ['--copy']):
        res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', bbx, '--images', images, '--output', out] + extra)
        assert res.returncode == 2 and 'is a symbolic link' in res.stderr, res.stderr
        assert os.listdir(victim) == ['a.jpg'] and (victim / 'a.jpg').read_bytes() == b'my own file'
    os.remove(str(out / 'images' / '0--Parade'))
    (out / 'images' / '0--Parade').mkdir()
    (out / 'images' / '0--Parade' / 'a.jpg').write_bytes(b'my own photo')
    for extra in ([], ['--copy']):
        res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', bbx, '--images', images, '--output', out] + extra)
        assert res.returncode == 2 and 'already exists and is not' in res.stderr and '--overwrite' in res.stderr
        assert (out / 'images' / '0--Parade' / 'a.jpg').read_bytes() == b'my own photo'
        assert not (out / 'label.txt').exists()
    res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', bbx, '--images', images, '--output', out, '--copy',
                                              '--overwrite'])
    assert res.returncode == 0, res.stderr
    res = tool('rcnn.dataset.convert_wider', ['--bbx_gt', bbx, '--images', images, '--output', out, '--copy',
                                              '--overwrite'])  # a rerun over its own copies
    assert res.returncode == 0, res.stderr


def test_landmark_lines_are_numbered_as_the_label_reader_numbers_them(tmp_path):
    """A \\x1c (whitespace to str.split, a line break to str.splitlines) inside a face line: each face keeps its
    own landmarks (before: the second face got the values of the line after it)."""
    from rcnn.dataset.convert_wider import landmark_lines
    first = ' '.join(['11.0 12.0 0.0'] * 5) + ' 0.5'
    second = ' '.join(['61.0 62.0 1.0'] * 5) + ' 0.7'
    label = tmp_path / 'label.txt'
    label.write_text('# 0--Parade/a.jpg\n10 10 50 50 %s\x1c\n60 60 20 20 %s\n' % (first, second))
    found = landmark_lines(str(label))['0--Parade/a.jpg']
    assert found[(10, 10, 50, 50)] == first and found[(60, 60, 20, 20)] == second


def _interrupt_when(cmd, ready, timeout=300):
    """Run `cmd` in its own process group and send SIGINT to the group once ready() holds; (rc, out, err)."""
    import signal
    import time
    proc = subprocess.Popen([str(a) for a in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, preexec_fn=lambda: (os.setpgrp(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_an_interrupted_folder_run_keeps_its_work_and_resumes(tmp_path, mnet25_prefix):
    """Ctrl-C in a folder run with --crops: exit 130, no traceback, the finished drawings and crops listed in
    detections.json; the same command again finishes the rest without --overwrite and without redoing them."""
    photos = tmp_path / 'photos'
    photos.mkdir()
    for k in range(12):
        cv2.imwrite(str(photos / ('p%02d.jpg' % k)), cv2.imread(shared_path('images', ('t1.jpg', 't4.jpg')[k % 2])))
    out, crops = tmp_path / 'drawn', tmp_path / 'crops'
    cmd = [sys.executable, os.path.join(ROOT, 'retinaface.py'), '--prefix', mnet25_prefix, '--image', photos,
           '--output', out, '--crops', crops]
    rc, stdout, stderr = _interrupt_when(cmd, lambda: out.is_dir() and len(os.listdir(out)) >= 3)
    assert rc == 130, stderr[-2000:]
    assert 'Traceback' not in stderr and 'interrupted:' in stderr
    first = json.loads((out / 'detections.json').read_text())
    assert 0 < len(first) < 12
    assert (out / 'detections.json.partial').is_file()  # this run's settings: only they resume it
    drawn = sorted(p for p in os.listdir(out) if not p.startswith('detections.json'))
    assert drawn == sorted(os.path.basename(p) for p in first)
    assert sorted(str(crops / c) for c in os.listdir(crops)) == sorted(f['crop'] for r in first.values() for f in r)
    stamps = {p: os.stat(out / p).st_mtime_ns for p in drawn}
    res = subprocess.run([str(a) for a in cmd], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'resuming: %d of the 12 images were finished' % len(first) in res.stderr
    final = json.loads((out / 'detections.json').read_text())
    assert len(final) == 12 and all(final[p] == first[p] for p in first)
    assert all(os.stat(out / p).st_mtime_ns == t for p, t in stamps.items())  # not redone
    assert not (out / 'detections.json.partial').exists()
    res = subprocess.run([str(a) for a in cmd], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 2 and 'pass --overwrite' in res.stderr  # a completed run is not redone silently


def test_an_interrupted_video_keeps_its_frames_consistently(tmp_path, mnet25_prefix):
    video = tmp_path / 'in.mp4'
    _video(video, frames=60)
    out, lines, crops = tmp_path / 'out.mp4', tmp_path / 'out.jsonl', tmp_path / 'crops'
    cmd = [sys.executable, os.path.join(ROOT, 'retinaface.py'), '--prefix', mnet25_prefix, '--video', video,
           '--output', out, '--json', lines, '--crops', crops, '--scale', 1, '--batch', 2]
    rc, stdout, stderr = _interrupt_when(cmd, lambda: crops.is_dir() and len(os.listdir(crops)) >= 20)
    assert rc == 130, stderr[-2000:]
    assert 'Traceback' not in stderr and 'interrupted at frame' in stderr
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert 0 < len(records) < 60
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len(records)
    assert sorted(str(crops / c) for c in os.listdir(crops)) == sorted(c for r in records for c in r['crops'])
    res = subprocess.run([str(a) for a in cmd], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0 and 'resuming after frame %d' % len(records) in res.stderr, res.stderr[-2000:]
    final = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(final) == 60 and final[:len(records)] == records
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 60
    assert sorted(str(crops / c) for c in os.listdir(crops)) == sorted(c for r in final for c in r['crops'])


def test_video_outputs_and_inputs_that_are_mistakes(tmp_path, mnet25_prefix):
    video = tmp_path / 'in.mp4'
    _video(video)
    res = cli(['--prefix', mnet25_prefix, '--video', video, '--output', tmp_path / 'o.mp4', '--json',
               tmp_path / 'o.mp4'])
    assert res.returncode == 2 and '--json and --output name the same file' in res.stderr
    (tmp_path / 'folder.mp4').mkdir()
    res = cli(['--prefix', mnet25_prefix, '--video', video, '--output', tmp_path / 'folder.mp4', '--overwrite'])
    assert res.returncode == 2 and 'is a folder' in res.stderr
    fake = tmp_path / 'photo.mp4'
    shutil.copy(shared_path('images', 't1.jpg'), fake)
    res = cli(['--prefix', mnet25_prefix, '--video', fake, '--output', tmp_path / 'f.mp4'])
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr[-2000:]


def test_a_truncated_video_is_warned_about(tmp_path, mnet25_prefix):
    """An AVI cut in half: its header promises every frame, half can be decoded; the run says so."""
    video = tmp_path / 'cut.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 6, (240, 136))
    img = cv2.resize(cv2.imread(shared_path('images', 't1.jpg')), (240, 136))
    for k in range(30):
        writer.write(np.roll(img, 4 * k, axis=1))
    writer.release()
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])
    res = cli(['--prefix', mnet25_prefix, '--video', video, '--output', tmp_path / 'o.avi', '--scale', 1])
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'its header says 30 frames but only' in res.stderr and 'may be truncated' in res.stderr
