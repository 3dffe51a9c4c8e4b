"""Tests of the Python models' maths in model_repository/, without Triton."""
