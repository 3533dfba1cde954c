"""The evaluation's breakdown (AP per event, recall per face size at a fixed precision, the misses picture) and
the peers' protocols (--mode original, --mode vga), against hand computations."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.dataset import breakdown as B
from rcnn.dataset import widerface_eval as wider
from rcnn.tools.evaluate import parse_mode, test_scales as scales_of


def toy():
    """Two events. 'a': 4 faces of heights 10, 20, 40, 100, all found (scores 0.9 ... 0.6). 'b': 2 faces of
    height 200 and 300, only the first found (0.95), plus a false positive (0.97) on background."""
    boxes = [np.array([[0, 0, 10, 10], [50, 0, 20, 20], [100, 0, 40, 40], [200, 0, 100, 100]], dtype=np.float64),
             np.array([[0, 0, 200, 200], [400, 0, 300, 300]], dtype=np.float64)]
    gt = wider.GroundTruth([('a', 'x'), ('b', 'y')], boxes, {'all': [np.arange(4), np.arange(2)]}, 'toy')
    preds = [np.array([[0, 0, 10, 10, 0.9], [50, 0, 20, 20, 0.8], [100, 0, 40, 40, 0.7], [200, 0, 100, 100, 0.6]]),
             np.array([[900, 900, 50, 50, 0.97], [0, 0, 200, 200, 0.95]])]
    return preds, gt


def test_ap_per_event_is_each_events_own_ap():
    preds, gt = toy()
    result = B.breakdown(preds, gt, precision=0.5)
    # a: every face found, no false positive before them: AP 1. b: the false positive comes first (precision 0
    # at recall 0), then one of two faces: precision 1/2 at recall 1/2 -> AP 0.5 * 0.5 = 0.25
    assert result['events']['a']['all'] == pytest.approx(1.0)
    assert result['events']['b']['all'] == pytest.approx(0.25)
    assert result['events']['a']['faces'] == 4 and result['events']['b']['images'] == 1


def test_recall_per_face_height_at_the_precision_asked():
    preds, gt = toy()
    # precision >= 0.8 holds down to score 0.6 (5 of the 6 predictions right: 0.83); every found face counts
    at = B.breakdown(preds, gt, precision=0.8)['recall_at_precision']
    by = {b['height']: (b['faces'], b['recall']) for b in at['buckets']}
    assert by == {'<16': (1, 1.0), '16-32': (1, 1.0), '32-64': (1, 1.0), '64-128': (1, 1.0), '>=128': (2, 0.5)}
    assert at['recall'] == pytest.approx(5 / 6) and at['precision'] == pytest.approx(5 / 6)
    assert at['score'] == pytest.approx(0.6, abs=0.001)
    # precision 0.9 is never reached: the false positive scores highest, so the precision climbs from 0 (the FP
    # alone) through 1/2, 2/3, 3/4, 4/5 to 5/6 at the lowest score
    assert B.breakdown(preds, gt, precision=0.9)['recall_at_precision'] is None


def test_misses_picture_and_the_lines(tmp_path):
    import cv2
    preds, gt = toy()
    img = np.full((1000, 1000, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / 'img.jpg'), img)
    result = B.breakdown(preds, gt, precision=0.8)
    out = B.misses_picture(result, preds, gt, lambda key: str(tmp_path / 'img.jpg'), str(tmp_path / 'm.png'))
    picture = cv2.imread(out)
    assert picture.shape == (320, 8 * 160, 3)
    assert picture[:160, :160].any() and not picture[:160, 160:320].any()  # one miss, then empty tiles
    assert picture[160:, :160].any() and not picture[160:, 160:320].any()  # one false positive
    lines = B.format_breakdown(result, ['all'])
    assert lines[1].split()[:2] == ['a', '1.0000'] and '>=128 px 0.500 (2)' in lines[-1]


def test_peer_protocol_scales():
    assert scales_of((768, 1024, 3), parse_mode('original')) == ([1.0], False)
    assert scales_of((768, 1024, 3), parse_mode('vga')) == ([0.625], False)   # long side 1024 -> 640
    assert scales_of((1024, 683, 3), parse_mode('VGA')) == ([0.625], False)
    assert parse_mode('1') == 1
    with pytest.raises(Exception, match='original, vga'):
        parse_mode('3')


@pytest.mark.parametrize('mode', ['original', 'vga'])
def test_test_py_reports_events_sizes_and_misses_in_the_peer_modes(mnet25_prefix, mode, tmp_path):
    data = os.path.dirname(os.path.dirname(shared_path('widerface', 'retinaface', 'val', 'label.txt')))
    out = tmp_path / mode
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'test.py'), '--prefix', mnet25_prefix, '--epoch', '0',
                          '--dataset_path', data, '--mode', mode, '--limit', '6', '--gpu', '-1', '--gt',
                          shared_path('widerface', 'ground_truth'), '--output', str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.load(open(out / 'ap.json'))
    assert summary['run']['mode'] == mode and 'subset: 6 of its 3226 images' in summary['title']
    assert set(summary['events']) == {p.parent.name for p in out.rglob('*.txt')}
    assert summary['misses_picture'] == str(out / 'misses.png') and os.path.isfile(out / 'misses.png')
    assert 'AP per event' in res.stdout and 'written: %s' % (out / 'ap.json') in res.stdout
