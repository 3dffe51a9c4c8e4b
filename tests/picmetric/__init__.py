"""Tests of picmetric/: the Triton launcher, the CPU onnxruntime backend, TensorRT, check-gpu."""
