"""Host-side pipeline: model sources, palettization, dynamic execution, CLI entry points.

Importing this package must stay light: heavy frameworks (torch, onnx, tensorflow) load inside
the functions that need them.
"""

__version__ = "0.1.0"
