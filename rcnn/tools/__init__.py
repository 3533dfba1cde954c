"""Command-line tools: ``python -m rcnn.tools.quantize`` (INT8) and ``python -m rcnn.tools.export_onnx``."""
