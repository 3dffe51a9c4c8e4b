"""Picmetric's inference service: shared constants, preprocessing and the `picmetric` command."""
