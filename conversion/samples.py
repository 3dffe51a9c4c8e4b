"""Real photos for post-export validation (they ship inside the scikit-image wheel)."""

from __future__ import annotations

import numpy as np

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee")


def sample_photos(names: tuple[str, ...] = SAMPLE_PHOTOS) -> dict[str, np.ndarray]:
    """RGB uint8 photos by name."""
    from skimage import data

    return {name: getattr(data, name)() for name in names}
