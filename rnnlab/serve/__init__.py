"""Serve: load a run and label texts (torch or ONNX), evaluate it, export it."""
