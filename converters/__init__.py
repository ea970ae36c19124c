"""Export to ONNX and TFLite (dense | palette | palette-int8), verification, bundles."""
