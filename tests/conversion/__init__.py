"""Tests of conversion/: weights, the darknet reader, config edits."""
