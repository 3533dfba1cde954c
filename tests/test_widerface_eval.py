"""WIDER FACE AP: hand-computed cases for every rule of the official toolkit, and the real ground truth."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.dataset import widerface_eval as W


def gt_of(boxes, keep=None, images=None, dtype=np.int32):
    boxes = [np.asarray(b, dtype=dtype).reshape(-1, 4) for b in boxes]
    images = images or [('e', 'img%d' % i) for i in range(len(boxes))]
    keep = keep if keep is not None else [np.arange(len(b)) for b in boxes]
    return W.GroundTruth(images, boxes, {'hard': [np.asarray(k, dtype=np.int64) for k in keep]}, 'test')


def write(pred_dir, event, name, text):
    os.makedirs(os.path.join(pred_dir, event), exist_ok=True)
    with open(os.path.join(pred_dir, event, name + '.txt'), 'w') as f:
        f.write(text)


def dets(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def ap_of(preds, gt):
    return W.evaluate(preds, gt)['hard']['ap']


def test_hand_computed_ap():
    # 2 counted faces; predictions: hit (0.9), FP (0.8), hit on the second face (0.7)
    # normalised scores 1, 0.5, 0 -> thresholds 0.999..0.5: P=1 R=.5 (t<500), P=.5 R=.5, t=1000: P=2/3 R=1
    gt = gt_of([[[0, 0, 10, 10], [50, 50, 10, 10]]])
    preds = [dets([0, 0, 10, 10, 0.9], [100, 100, 10, 10, 0.8], [50, 50, 10, 10, 0.7])]
    res = W.evaluate(preds, gt)['hard']
    assert res['faces'] == 2
    np.testing.assert_allclose(res['precision'][[0, 498, 499, 998, 999]], [1, 1, 0.5, 0.5, 2 / 3])
    np.testing.assert_allclose(res['recall'][[0, 499, 999]], [0.5, 0.5, 1.0])
    assert res['ap'] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)


def test_ignored_face_removes_the_prediction_from_proposals():
    # face 0 counts, face 1 is ignored; a prediction on the ignored face is neither TP nor FP
    gt = gt_of([[[0, 0, 10, 10], [50, 50, 10, 10]]], keep=[[0]])
    with_ignored = [dets([50, 50, 10, 10, 0.9], [0, 0, 10, 10, 0.5])]
    assert ap_of(with_ignored, gt) == pytest.approx(1.0)
    with_fp = [dets([80, 80, 10, 10, 0.9], [0, 0, 10, 10, 0.5])]  # same but a real false positive
    assert ap_of(with_fp, gt) == pytest.approx(0.5)


def test_duplicate_is_false_positive_and_count_face_includes_images_without_predictions():
    gt = gt_of([[[0, 0, 10, 10]], [[0, 0, 10, 10], [30, 30, 10, 10]]])
    preds = [dets([0, 0, 10, 10, 0.9], [0, 0, 10, 10, 0.8]), np.zeros((0, 5))]
    res = W.evaluate(preds, gt)['hard']
    assert res['faces'] == 3
    # t < 1000: 1 proposal 1 TP; t = 1000: 2 proposals, 1 TP -> AP = 1/3 * 1
    assert res['ap'] == pytest.approx(1 / 3)


def _one(x, y, gt):
    """AP of one prediction (x, y, 10, 10) plus a far, lower-scored false positive that gives the
    normalisation a range: 1.0 when the prediction matches, 0.0 when it does not."""
    return ap_of([dets([x, y, 10, 10, 0.9], [500, 500, 10, 10, 0.1])], gt)


def test_int32_iou_rounding_d1():
    gt = gt_of([[[0, 0, 10, 10]]])                       # corners 0..10: area 11 x 11 = 121 (+1 convention)
    float_gt = gt_of([[[0, 0, 10, 10]]], dtype=np.float64)
    # x=4.6: exact inter 6.4*11 = 70.4, union 171.6 -> .41; int32 x1 = 5: 66 / (242 - 66) = .375: both fail
    assert _one(4.6, 0, gt) == _one(4.6, 0, float_gt) == 0.0
    # x=3.4, y=0.3: exact 7.6*10.7 = 81.32 / 160.68 = .506; int32 corners 3, 0: 88 / 154 = .571: both pass
    assert _one(3.4, 0.3, gt) == _one(3.4, 0.3, float_gt) == 1.0
    # x=3.45, y=0.45: exact 7.55*10.55 = 79.65 / 162.35 = .4906 fails; int32 corners 3, 0: .571 passes
    assert _one(3.45, 0.45, float_gt) == 0.0
    assert _one(3.45, 0.45, gt) == 1.0


def test_single_score_normalises_to_nan():
    # one prediction only: min == max, every normalised score is NaN and nothing passes a threshold
    gt = gt_of([[[0, 0, 10, 10]]])
    assert ap_of([dets([0, 0, 10, 10, 0.9])], gt) == 0.0


def test_first_passing_gt_wins_under_int32():
    # two counted GTs overlap the prediction; GT 0 passes with lower IoU, GT 1 is a perfect match.
    # official: GT 0 (first passing) is recalled, so a second prediction on GT 0 is a duplicate FP
    gt = gt_of([[[0, 0, 20, 20], [0, 0, 14, 20]]])
    preds = [dets([0, 0, 14, 20, 0.9], [0, 0, 20, 20, 0.8])]
    res = W.evaluate(preds, gt)['hard']
    # pred 1 -> GT 0 (IoU 315/441 = .71 passes, first) ; pred 2 -> GT 0 again: FP. Recall stays 1/2.
    assert res['recall'][-1] == pytest.approx(0.5)
    exact = gt_of([[[0, 0, 20, 20], [0, 0, 14, 20]]], dtype=np.float64)
    assert W.evaluate(preds, exact)['hard']['recall'][-1] == pytest.approx(1.0)  # argmax: both found


def test_files_are_sorted_per_image_d2(tmp_path):
    gt = gt_of([[[0, 0, 10, 10], [50, 50, 10, 10]]])
    write(str(tmp_path), 'e', 'img0', 'e/img0.jpg\n3\n100 100 10 10 0.8\n50 50 10 10 0.7\n0 0 10 10 0.9\n')
    results, _, problems = W.evaluate_folder(str(tmp_path), gt)
    assert problems == []
    assert results['hard']['ap'] == pytest.approx(0.5 + 0.5 * 2 / 3)  # same as the sorted hand case


def test_score_normalisation_d3():
    gt = gt_of([[[0, 0, 10, 10], [50, 50, 10, 10]]])
    base = [dets([0, 0, 10, 10, 0.9], [100, 100, 10, 10, 0.8], [50, 50, 10, 10, 0.7])]
    scaled = [dets([0, 0, 10, 10, 90], [100, 100, 10, 10, 80], [50, 50, 10, 10, 70])]
    negative = [dets([0, 0, 10, 10, -1], [100, 100, 10, 10, -2], [50, 50, 10, 10, -3])]
    assert ap_of(base, gt) == ap_of(scaled, gt) == pytest.approx(ap_of(negative, gt))
    equal = [dets([0, 0, 10, 10, 0.5], [100, 100, 10, 10, 0.5])]
    assert ap_of(equal, gt) == 0.0  # all scores equal -> NaN -> nothing passes any threshold


def test_file_reading_rules_d4(tmp_path):
    gt = gt_of([[[0, 0, 10, 10]]] * 9, images=[('ev', 'i%d' % i) for i in range(9)])
    d = str(tmp_path)
    write(d, 'ev', 'i0', 'anything\n1\n0\t0,10  10 0.9\n')          # tabs, commas, double spaces
    write(d, 'ev', 'i1', 'x\n1\n 0 0 10 10 0.9\n')                  # leading space is fine
    write(d, 'ev', 'i2', '')                                        # empty file: dropped
    write(d, 'ev', 'i3', 'x\n2\n0 0 10 10 0.9\n')                   # fewer lines than N: dropped
    write(d, 'ev', 'i4', 'x\n1\n0 0 10 10\n')                       # 4 numbers: dropped
    write(d, 'ev', 'i5', 'x\nabc\n0 0 10 10 0.9\n')                 # bad count: dropped
    write(d, 'ev', 'i6', 'x\n1\n0 0 10 10 0.9 7 8\nextra line\n')   # extra values/lines ignored
    write(d, 'ev', 'i7', 'x\n0\n')                                  # no predictions
    # i8: no file at all
    preds, problems = W.read_predictions(d, gt)
    assert [len(p) for p in preds] == [1, 1, 0, 0, 0, 0, 1, 0, 0]
    why = {os.path.basename(p): w for p, w in problems}
    assert set(why) == {'i2.txt', 'i3.txt', 'i4.txt', 'i5.txt', 'i6.txt', 'i8.txt'}
    assert why['i8.txt'] == 'missing' and 'count line says 2' in why['i3.txt']
    assert 'count line says 1 boxes but 1 more box lines follow: only the first 1 are read' in why['i6.txt']
    assert 'fewer than 5' in why['i4.txt'] and 'i4.txt' not in why['i2.txt']


def test_nan_scores_are_warned_and_sorted_first(tmp_path):
    write(str(tmp_path), 'e', 'img0', 'x\n2\n0 0 10 10 0.5\n50 50 10 10 nan\n')
    det, problem = W.read_pred_file(os.path.join(str(tmp_path), 'e', 'img0.txt'))
    assert np.isnan(det[0, 4]) and det[1, 4] == 0.5 and 'NaN' in problem


def test_voc_ap_ignores_nan_precision():
    assert W.voc_ap(np.array([0.0, 0.5, 1.0]), np.array([np.nan, 1.0, 0.5])) == pytest.approx(0.75)


def test_bad_prediction_folder_and_cli_errors(tmp_path):
    gt = gt_of([[[0, 0, 10, 10]]])
    with pytest.raises(FileNotFoundError, match='prediction folder not found'):
        W.evaluate_folder(str(tmp_path / 'none'), gt)
    run = subprocess.run([sys.executable, '-m', 'rcnn.dataset.widerface_eval', '--pred', str(tmp_path / 'none'),
                          '--gt', str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and 'prediction folder not found' in run.stderr and 'Traceback' not in run.stderr
    (tmp_path / 'pred').mkdir()
    run = subprocess.run([sys.executable, '-m', 'rcnn.dataset.widerface_eval', '--pred', str(tmp_path / 'pred'),
                          '--gt', str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and 'wider_easy_val.mat' in run.stderr and 'Traceback' not in run.stderr


def test_odd_prediction_files_follow_the_toolkit_and_are_named(tmp_path, caplog):
    gt = gt_of([[[0, 0, 10, 10]], [[0, 0, 10, 10]], [[0, 0, 10, 10]]], images=[('e', 'a'), ('e', 'b'), ('e', 'c')])
    d = str(tmp_path)
    write(d, 'e', 'a', 'x\n-2\n0 0 10 10 0.9\n')                 # negative count: no detections
    write(d, 'e', 'b', 'x\n2\n0 0 10 10 0.9\n0 0 -5 10 0.8\n')   # negative width: IoU 0
    write(d, 'e', 'c', 'x\n2\n0 0 10 10 inf\n0 0 10 10 0.7\n')   # an infinite score
    preds, problems = W.read_predictions(d, gt)
    why = {os.path.basename(p): w for p, w in problems}
    assert 'negative box count -2' in why['a.txt'] and len(preds[0]) == 0
    assert '1 boxes with negative width or height' in why['b.txt'] and len(preds[1]) == 2
    assert '1 infinite scores' in why['c.txt']
    # the toolkit's arithmetic with the inf: every finite score normalises to 0, the inf to NaN
    norm = W.normalise_scores(preds)
    assert np.isnan(norm[2][0, 4]) and (norm[1][:, 4] == 0).all()
    with caplog.at_level('WARNING'):
        W.normalise_scores([dets([0, 0, 10, 10, 0.5], [20, 20, 5, 5, 0.5])])
    assert 'same score (0.5)' in caplog.text and 'AP 0' in caplog.text


def test_corrupt_ground_truth_and_unwritable_output_are_explained(tmp_path):
    gt_dir = tmp_path / 'gt'
    gt_dir.mkdir()
    for s in ('face', 'easy', 'medium', 'hard'):
        (gt_dir / ('wider_%s_val.mat' % s)).write_bytes(b'MATLAB 5.0 MAT-file, truncated')
    with pytest.raises(ValueError, match='cannot read ground truth .*wider_easy_val.mat'):
        W.load_mat_gt(str(gt_dir))
    from scipy.io import savemat
    for s in ('easy', 'medium', 'hard'):
        savemat(str(gt_dir / ('wider_%s_val.mat' % s)), {'something': np.zeros(3)})
    with pytest.raises(ValueError, match='wider_easy_val.mat has no event_list, file_list, face_bbx_list, gt_list'):
        W.load_mat_gt(str(gt_dir))
    pred = tmp_path / 'pred'
    pred.mkdir()
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    run = subprocess.run([sys.executable, '-m', 'rcnn.dataset.widerface_eval', '--pred', str(pred), '--gt',
                          str(gt_dir), '--output', str(blocker / 'sub')], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and 'cannot write ap.json and pr_curves.png to --output' in run.stderr
    assert 'Traceback' not in run.stderr


def test_official_ground_truth_counts():
    gt = W.load_mat_gt(shared_path('widerface', 'ground_truth'))
    assert len(gt.images) == 3226 and sum(len(b) for b in gt.boxes) == 39708
    assert {s: sum(len(k) for k in gt.keep[s]) for s in W.SETTINGS} == {'easy': 7211, 'medium': 13319,
                                                                          'hard': 31958}
    assert gt.boxes[0].dtype == np.int32


def test_perfect_predictions_on_real_gt_subset(tmp_path):
    """GT boxes written back as predictions: every counted face found, precision 1 -> AP 1 on every setting."""
    gt = W.load_mat_gt(shared_path('widerface', 'ground_truth'))
    sub = gt.subset(set(gt.images[:60]))
    for (event, name), boxes in zip(sub.images, sub.boxes):
        rows = ''.join('%d %d %d %d %.3f\n' % (x, y, w, h, 0.5 + 0.4 * (k % 7) / 7) for k, (x, y, w, h)
                       in enumerate(boxes))
        write(str(tmp_path), event, name, '%s/%s.jpg\n%d\n%s' % (event, name, len(boxes), rows))
    run = subprocess.run([sys.executable, '-m', 'rcnn.dataset.widerface_eval', '--pred', str(tmp_path), '--gt',
                          shared_path('widerface', 'ground_truth'), '--subset'], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr
    summary = json.load(open(tmp_path / 'ap.json'))
    assert summary['images'] == 60
    # boxes with w or h <= 0 can never be matched, so hard may fall short of 1 by those few faces
    assert summary['ap']['easy'] == pytest.approx(1.0) and summary['ap']['hard'] > 0.99
    assert (tmp_path / 'pr_curves.png').stat().st_size > 1000


def test_test_py_end_to_end_on_real_val_images(mnet25_prefix, tmp_path):
    """test.py on the first real val images: submission files in the WIDER format, AP table, ap.json, plot,
    resume by skipping, and sharding with --parts/--part."""
    dataset = os.path.dirname(os.path.dirname(shared_path('widerface', 'retinaface', 'val', 'label.txt')))
    gt = shared_path('widerface', 'ground_truth')
    out = tmp_path / 'out'
    base = [sys.executable, os.path.join(ROOT, 'test.py'), '--prefix', mnet25_prefix, '--epoch', '0',
            '--dataset_path', dataset, '--gt', gt, '--mode', '0', '--gpu', '-1', '--limit', '4',
            '--output', str(out)]
    run = subprocess.run(base, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'subset: 4 of its 3226 images: 4 images, ' in run.stdout and 'counted: easy' in run.stdout and re.search(r'Easy [01]\.\d{4}  Medium [01]\.\d{4}  Hard [01]\.\d{4}',
                                                        run.stdout)
    files = sorted(p for p in out.rglob('*.txt'))
    assert len(files) == 4
    lines = files[0].read_text().splitlines()
    event = files[0].parent.name
    assert lines[0] == '%s/%s' % (event, files[0].name.replace('txt', 'jpg'))
    assert int(lines[1]) == len(lines) - 2 > 0
    x, y, w, h, score = lines[2].split(' ')[:5]
    assert all(v.lstrip('-').isdigit() for v in (x, y, w, h)) and 0.02 <= float(score) <= 1
    assert lines[2].endswith(' ')  # the original's trailing space
    summary = json.load(open(out / 'ap.json'))
    assert summary['images'] == 4 and 0 < summary['ap']['hard'] <= 1
    assert (out / 'pr_curves.png').exists()
    again = subprocess.run(base, capture_output=True, text=True, cwd=ROOT)
    assert '0 images detected, 4 already had results' in again.stdout
    part = subprocess.run(base[:-1] + [str(tmp_path / 'p1'), '--parts', '2', '--part', '1'], capture_output=True,
                          text=True, cwd=ROOT)
    assert part.returncode == 0 and len(list((tmp_path / 'p1').rglob('*.txt'))) == 2
    assert 'part 1 of 2 done' in part.stdout


def test_label_txt_ground_truth(tmp_path):
    label = tmp_path / 'label.txt'
    label.write_text('# 0--Parade/a.jpg\n0 0 10 10\n50 50 10.5 10\n# 1--Handshaking/b.jpg\n0 0 0 0\n')
    gt = W.load_label_gt(str(label))
    assert gt.images == [('0--Parade', 'a'), ('1--Handshaking', 'b')]
    assert gt.boxes[0].dtype == np.float64 and len(gt.boxes[1]) == 0  # fractional -> exact IoU; placeholder dropped
    preds = [dets([0, 0, 10, 10, 0.9], [50, 50, 10, 10, 0.8], [200, 200, 5, 5, 0.1]), np.zeros((0, 5))]
    res = W.evaluate(preds, gt)['all']
    assert res['faces'] == 2 and res['ap'] == pytest.approx(1.0)


def test_cli_keeps_an_existing_ap_file_and_announces_a_partial_prediction_set(tmp_path):
    """test.py's ap.json in the prediction folder is not replaced without --overwrite; predictions for 60 of the
    3,226 images are announced before the table with the --subset hint, and a --subset run says it is one."""
    gt = W.load_mat_gt(shared_path('widerface', 'ground_truth'))
    sub = gt.subset(set(gt.images[:60]))
    for (event, name), boxes in zip(sub.images, sub.boxes):
        rows = ''.join('%d %d %d %d 0.9\n' % tuple(b) for b in boxes)
        write(str(tmp_path), event, name, '%s/%s.jpg\n%d\n%s' % (event, name, len(boxes), rows))
    (tmp_path / 'ap.json').write_text('{"ap": "from test.py"}')
    cmd = [sys.executable, '-m', 'rcnn.dataset.widerface_eval', '--pred', str(tmp_path), '--gt',
           shared_path('widerface', 'ground_truth')]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and 'ap.json already exists' in run.stderr and '--overwrite' in run.stderr
    assert (tmp_path / 'ap.json').read_text() == '{"ap": "from test.py"}'
    run = subprocess.run(cmd + ['--overwrite'], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    note = out.index('60 of the 3226 ground-truth images have a prediction file')
    assert note < out.index('Easy ') and 'add --subset' in out
    run = subprocess.run(cmd + ['--overwrite', '--subset'], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and 'subset: 60 of the 3226 images' in run.stdout
    assert json.load(open(tmp_path / 'ap.json'))['title'] == 'subset: 60 of the 3226 images'
