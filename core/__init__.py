"""The bottom layer: the model contract (names, input sizes, keypoint order, label files), the
client-side preprocessing and where files live. Imports nothing from this project."""
