"""Shared fixtures. Real material lives in ../shared (CI has it; a fresh clone does not)."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.environ.get('RETINAFACE_INSTALLED'):  # set by `make test-onnx`: test the installed package instead
    sys.path.insert(0, ROOT)
SHARED = os.environ.get('RETINAFACE_SHARED', os.path.join(os.path.dirname(ROOT), 'shared'))
SHARED_REASON = ('needs the shared real material (../shared next to the checkout, or $RETINAFACE_SHARED): '
                 'published models, real images and reference outputs')


def shared_path(*parts):
    """Path under ../shared, or skip the test with a clear reason when it is absent."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip('%s; missing %s' % (SHARED_REASON, path))
    return path


@pytest.fixture(scope='session')
def mnet25_prefix():
    shared_path('models', 'mnet.25-0000.params')
    return os.path.join(SHARED, 'models', 'mnet.25')


SCORE_MARGIN = 0.005  # a face this close to the threshold may legitimately flip in or out


def reference_input(img, key):
    """(image, scales) of a setting of reference/orig_mnet25_detect.json."""
    import cv2
    from retinaface import single_scale
    if key == 'a_testpy':
        return img, [single_scale(img.shape)]
    return cv2.resize(img, (640, 480), interpolation=cv2.INTER_LINEAR), [1.0]


def assert_matches_reference(faces, landmarks, ref_dets, threshold):
    """The original's tolerance: same faces (but those within SCORE_MARGIN of the threshold), boxes and
    landmarks within 0.01 px, scores within 1e-4."""
    ref_boxes = np.array([d['box'] for d in ref_dets]).reshape(-1, 4)
    ref_scores = np.array([d['score'] for d in ref_dets])
    ref_lm = np.array([d['landmarks'] for d in ref_dets]).reshape(-1, 5, 2)
    near = lambda s: np.abs(s - threshold) < SCORE_MARGIN  # noqa: E731
    faces, landmarks = faces[~near(faces[:, 4])], landmarks[~near(faces[:, 4])]
    keep = ~near(ref_scores)
    ref_boxes, ref_scores, ref_lm = ref_boxes[keep], ref_scores[keep], ref_lm[keep]
    assert len(faces) == len(ref_scores)
    np.testing.assert_allclose(faces[:, :4], ref_boxes, atol=0.01)
    np.testing.assert_allclose(faces[:, 4], ref_scores, atol=1e-4)
    np.testing.assert_allclose(landmarks, ref_lm, atol=0.01)


def detect_reference_setting(detector, image, setting):
    """(faces, landmarks) of `detector` on a reference photo in one of the original's settings, checked against
    the original implementation's detections (reference/orig_mnet25_detect.json)."""
    import json
    import cv2
    ref = json.load(open(shared_path('reference', 'orig_mnet25_detect.json')))
    conf = ref['settings'][setting]
    img, scales = reference_input(cv2.imread(shared_path('images', image)), setting)
    faces, landmarks = detector.detect(img, conf['threshold'], scales=scales, do_flip=conf['do_flip'])
    assert_matches_reference(faces, landmarks, ref['images'][image][setting]['dets'], conf['threshold'])
    return faces, landmarks
