"""Reading data files: images (the detector, the training pipeline and the split check read them the same way)
and the error every data problem is reported with.
"""
import os

import cv2

__all__ = ['AnnotationError', 'check_jpeg_complete', 'read_image']


class AnnotationError(ValueError):
    """A label file or image problem, with the file and line it comes from."""


def check_jpeg_complete(path):
    """Raise ValueError when a JPEG file is cut short: OpenCV decodes such a file with only a libjpeg warning
    (no file name) and grey for the missing rows, so a truncated download would be used silently."""
    with open(path, 'rb') as f:
        head = f.read(2)
        if head != b'\xff\xd8':
            return  # not a JPEG: OpenCV's own check applies
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4096))  # the marker may be followed by a short trailer some cameras append
        tail = f.read()
    if b'\xff\xd9' not in tail:  # cannot occur inside entropy-coded data (0xFF is stuffed there)
        raise ValueError('truncated JPEG (no end-of-image marker): %s' % path)


def read_image(path):
    """BGR uint8 image from a file; ValueError naming the file when it is missing, not an image, or a JPEG cut
    short (OpenCV would decode the missing rows as grey with no error)."""
    if not os.path.isfile(path):
        raise ValueError('image not found: %s' % path)
    check_jpeg_complete(path)
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError('not a readable image file: %s' % path)
    return img
