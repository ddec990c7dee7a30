"""Inference: backends behind one protocol, chunked separation of any length, files, ONNX export."""
