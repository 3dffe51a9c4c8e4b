"""The `picmetric` command line and the local Triton launcher (the shared model contract and
preprocessing are in `core`)."""
