"""Shared fixtures. Real material lives in ../shared (CI has it; a fresh clone does not)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
