"""Compiled kernels (built in place by ``make``). Each has a numpy twin in ``rcnn.processing``."""
