"""Inference backends (PyTorch, ONNX Runtime, TensorRT) behind one interface."""
