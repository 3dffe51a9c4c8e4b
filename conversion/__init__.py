"""Exporters from Keras/TensorFlow to ONNX for the Triton model repository."""
