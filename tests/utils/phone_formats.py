"""Photos as phones write them, made here with real encoders: HEIC (pillow-heif's libheif and
x265), AVIF (Pillow's libavif), JPEGs with a Multi-Picture segment (Pillow's MPO writer: a second
JPEG after the first, as Ultra HDR gain maps are), each orientation stored the way its format
stores it (EXIF, or HEIF's irot/imir boxes), an ICC profile for Display P3 written from its
primaries, and `PhoneFiles`: the real-size photos of tests/utils/real_photos.py in each format,
encoded once a session."""

from __future__ import annotations

import io
import struct

import numpy as np
import pillow_heif
from PIL import Image
from pillow_heif import register_heif_opener

from tests.utils.real_photos import jpeg_bytes, real_photo

register_heif_opener()

# Every encoder at quality 95, the plain JPEG too: a face near MTCNN's threshold is then found
# or missed alike in each (at 90, AVIF and the JPEG lose different details of the 40 px face).
QUALITY = 95

# PIL.ImageOps.exif_transpose turns stored pixels upright with these; each entry here is its
# inverse, which turns an upright photo into the pixels a camera stores with that orientation.
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for `upright` under EXIF `orientation` (1-8)."""
    return upright if orientation == 1 else upright.transpose(_STORED[orientation])


def encode(
    upright: np.ndarray | Image.Image,
    format: str,
    orientation: int = 1,
    icc_profile: bytes | None = None,
    **options: object,
) -> bytes:
    """`upright` written as `format` (HEIF, AVIF, JPEG, MPO, PNG, WEBP, TIFF) with `orientation`:
    in EXIF (pillow-heif and Pillow's AVIF writer turn an EXIF orientation into irot/imir boxes
    and leave 1 in the EXIF). MPO: the photo and a quarter-size second image after it."""
    image = upright if isinstance(upright, Image.Image) else Image.fromarray(upright)
    pixels = stored(image, orientation)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if icc_profile is not None:
        options["icc_profile"] = icc_profile
    if format == "MPO":
        small = pixels.resize((max(1, pixels.width // 4), max(1, pixels.height // 4)))
        options.update(save_all=True, append_images=[small])
    buffer = io.BytesIO()
    pixels.save(buffer, format=format, exif=exif.tobytes(), **options)
    return buffer.getvalue()


# Display P3: DCI-P3 primaries, the D65 white point, the sRGB transfer curve.
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)


Chromaticities = tuple[tuple[float, float], ...]


def _xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries: Chromaticities, white: tuple[float, float]) -> np.ndarray:
    """The linear RGB to XYZ matrix of an RGB space, from its primaries and white point."""
    columns = np.stack([_xyz(*p) for p in primaries], axis=1)
    return columns * np.linalg.solve(columns, _xyz(*white))


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _tag_xyz(xyz: np.ndarray) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def icc_profile(primaries: Chromaticities, white: tuple[float, float]) -> bytes:
    """An ICC v2 display profile (matrix and curves) for an RGB space with the sRGB curve: the
    colorants adapted to the profile connection space's D50 white with Bradford, as ICC asks."""
    cone = _BRADFORD @ D50_XYZ / (_BRADFORD @ _xyz(*white))
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone) @ _BRADFORD
    colorants = adapt @ rgb_to_xyz(primaries, white)
    # The sRGB curve as a parametric curve (type 3): Y = (aX + b)^g above d, cX below.
    curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0)
    curve += b"".join(_s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    description = b"Display P3 (test)"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(description) + 1) + description + b"\0"
    desc += bytes(4 + 4 + 2 + 1 + 67)  # no Unicode or ScriptCode description
    tags = [
        (b"desc", desc),
        (b"wtpt", _tag_xyz(D50_XYZ)),
        (b"rXYZ", _tag_xyz(colorants[:, 0])),
        (b"gXYZ", _tag_xyz(colorants[:, 1])),
        (b"bXYZ", _tag_xyz(colorants[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0none\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = struct.pack(">I4sI", size, b"lcms", 0x02100000)
    header += b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(24)
    header += struct.pack(">I", 0) + b"".join(_s15(v) for v in D50_XYZ) + bytes(48)
    return header + table + body


def display_p3() -> bytes:
    return icc_profile(P3_PRIMARIES, D65)


class PhoneFiles:
    """Each photo encoded once per session: x265 takes about 1, 4 and 16 s at 1, 3 and 12 MP on
    two cores (HEIC in 512x512 tiles, as an iPhone writes it)."""

    def __init__(self) -> None:
        self._photos: dict[str, np.ndarray] = {}
        self._files: dict[tuple[str, str, int], bytes] = {}

    def photo(self, size: str) -> np.ndarray:
        if size not in self._photos:
            self._photos[size] = real_photo(int(size.removesuffix("mp")))
        return self._photos[size]

    def file(self, size: str, format: str, orientation: int = 1) -> bytes:
        key = (size, format, orientation)
        if key not in self._files:
            photo = self.photo(size)
            if format == "JPEG" and orientation == 1:
                self._files[key] = jpeg_bytes(photo, QUALITY)  # the plain JPEG: OpenCV
            else:
                pillow_heif.options.GRID_TILE_SIZE = 512
                try:
                    # WebP's lossy mode is 4:2:0 only: lossless, as its EXIF is what is tested.
                    options = {"lossless": True} if format == "WEBP" else {"quality": QUALITY}
                    self._files[key] = encode(photo, format, orientation, **options)
                finally:
                    pillow_heif.options.GRID_TILE_SIZE = 0
        return self._files[key]
