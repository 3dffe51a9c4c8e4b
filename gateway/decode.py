"""Bytes to an RGB array: the format is sniffed from the bytes (never from headers), the pixel
count is read from the image header before the full decode, OpenCV decodes once, straight to RGB,
and honours EXIF orientation. A JPEG that no model needs at full resolution is decoded at 1/2,
1/4 or 1/8 of its size straight from its DCT coefficients (a 12 MP photo for ResNet50 and YOLOv3
alone: 1008x756, in about a third of the time).

Before any pixel is decoded, `plan_decode` bounds the work and sizes the memory from the header:
the pixel count (PICMETRIC_MAX_IMAGE_PIXELS); for a JPEG the number of scans, counted from its
markers (PICMETRIC_MAX_JPEG_SCANS: libjpeg passes over every coefficient of a component once per
scan, so 4,000 repeated scans in 268 KB cost seconds of CPU in a decode that cannot be stopped);
and the bytes the decode will hold at its peak (`DecodePlan.memory`), which the gateway reserves
from its process-wide budget (gateway.admission.MemoryBudget) before decoding."""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from gateway.errors import ImageTooLarge, UnsupportedImage

DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit, before decoding


# EXIF orientations that turn the picture by 90 degrees (width and height swap).
_QUARTER_TURNS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_GPS_LATITUDE, _GPS_LONGITUDE = 2, 4
_DATETIME_ORIGINAL, _DATETIME = 0x9003, 0x0132
# Decoding at 1/factor of the size, largest first (IMREAD_COLOR_RGB is added to every flag: it
# decodes straight to RGB, without a BGR-to-RGB pass).
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)
_FULL = cv2.IMREAD_COLOR
# libjpeg's standard progressive script has 10 scans (6 for grey); encoders that tune theirs
# (mozjpeg, jpegli) stay within a few dozen.
DEFAULT_MAX_JPEG_SCANS = 64
# A JPEG marker (0xFF then a code) that is neither a stuffed 0xFF byte inside entropy-coded data
# (FF 00), a restart marker (FF D0-D7) nor a fill byte (FF FF).
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xDA)}  # markers without a length field


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int  # as stored, before EXIF orientation
    height: int
    turned: bool = False  # a JPEG whose EXIF orientation swaps width and height
    bands: int = 3  # samples per pixel as stored (RGBA: 4)
    sample_bytes: int = 1  # bytes per sample as stored (16-bit: 2)
    progressive: bool = False  # a progressive JPEG: its decoder holds every DCT coefficient
    has_location: bool = False  # its EXIF carries a GPS position (never kept here)
    taken_at: str | None = None  # EXIF DateTimeOriginal as ISO 8601, the camera's local time


@dataclass(frozen=True)
class DecodedImage:
    """RGB pixels [h, w, 3] uint8, and the photo's own size as shown (EXIF orientation applied),
    which `rgb` may be a reduced decode of."""

    rgb: np.ndarray
    width: int
    height: int

    @property
    def full_resolution(self) -> bool:
        return self.rgb.shape[:2] == (self.height, self.width)


def read_header(data: bytes) -> ImageHeader:
    """The format and size from the first bytes, without decoding pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # A JPEG's EXIF sits in its header; other formats would load pixels to find theirs.
            jpeg = image.format == "JPEG"
            exif = image.getexif() if jpeg else Image.Exif()
            turned = jpeg and exif.get(_EXIF_ORIENTATION) in _QUARTER_TURNS
            header = ImageHeader(
                image.format or "",
                image.width,
                image.height,
                turned,
                bands=len(image.getbands()),
                sample_bytes=_sample_bytes(image),
                progressive=jpeg and bool(image.info.get("progressive")),
                has_location=_has_location(exif),
                taken_at=_taken_at(exif),
            )
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnsupportedImage(
            "The data is not an image we can read; send JPEG, PNG, WebP, BMP or TIFF."
        ) from exc
    if header.format not in DECODABLE_FORMATS:
        raise UnsupportedImage(
            f"{header.format or 'This'} images are not supported; "
            "send JPEG, PNG, WebP, BMP or TIFF."
        )
    return header


def _has_location(exif: Image.Exif) -> bool:
    gps = exif.get_ifd(_GPS_IFD)
    return bool(gps.get(_GPS_LATITUDE) and gps.get(_GPS_LONGITUDE))


def _taken_at(exif: Image.Exif) -> str | None:
    """When the photo was taken, as its EXIF says ("2024:05:01 12:30:00"), in ISO 8601; None when
    absent or not a valid time."""
    stamp = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    try:
        return dt.datetime.strptime(str(stamp).strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _sample_bytes(image: Image.Image) -> int:
    """Bytes per stored sample: Pillow names 16-bit PNGs in the tile's raw mode and reports a
    TIFF's BitsPerSample; 32-bit modes (I, F) hold 4."""
    if image.mode in ("I", "F"):
        return 4
    tile = getattr(image, "tile", None)  # an ImageFile's, which Image.open returns
    raw = str(tile[0][3]) if tile else ""
    bits = getattr(image, "tag_v2", {}).get(258, (8,)) if image.format == "TIFF" else (8,)
    widest = max(bits) if isinstance(bits, tuple) and bits else 8
    if "16" in raw or "16" in image.mode or widest > 8:
        return max(2, -(-int(widest) // 8))
    return 1


def jpeg_scans(data: bytes, most: int) -> int:
    """The scans of a JPEG's main image, counted from its markers up to its EOI (not those of
    an EXIF thumbnail inside a segment, nor of images appended after it, like a gain map);
    counting stops past `most` (the answer is then `most + 1`), and so does a file of markers
    that are no scans, so the count itself is bounded work."""
    scans, position, markers = 0, 2, 0  # after SOI
    while (found := _JPEG_MARKER.search(data, position)) is not None:
        code, position = found.group()[1], found.end()
        markers += 1
        if code == _EOI:
            break
        if scans > most or markers > 8 * most + 256:  # a real JPEG has a few markers a scan
            return most + 1
        if code in _STANDALONE:
            continue
        if position + 2 > len(data):
            break
        length = int.from_bytes(data[position : position + 2], "big")
        position += length  # the segment's payload is skipped, markers inside it too
        if code == _SOS:
            scans += 1  # entropy-coded data follows: the next real marker ends it
    return scans


@dataclass(frozen=True)
class DecodePlan:
    """How a photo will be decoded, and what it costs, known from its header."""

    header: ImageHeader
    factor: int  # decoded at 1/factor of its size (a JPEG's reduced decode)
    flags: int

    @property
    def output_bytes(self) -> int:
        """The decoded RGB uint8 array."""
        header, factor = self.header, self.factor
        return -(-header.width // factor) * -(-header.height // factor) * 3

    @property
    def memory(self) -> int:
        """Peak bytes the decode holds: the RGB output, plus the stored samples where the
        decoder may keep them whole (a TIFF in one strip; a progressive JPEG's coefficients, 2
        bytes per sample), counted at full size, plus 15% for the decoder's own buffers (a
        6323x6323 16-bit RGBA TIFF in one strip: 440 MB of both, 487 MB measured with OpenCV)."""
        header = self.header
        stored = header.width * header.height * header.bands * header.sample_bytes
        if header.format == "JPEG":
            stored = header.width * header.height * header.bands * 2 if header.progressive else 0
        return (stored + self.output_bytes) * 23 // 20


def plan_decode(
    data: bytes, max_pixels: int, max_jpeg_scans: int, min_side: int | None = None
) -> DecodePlan:
    """Check the photo against the per-photo limits and choose its decode, from the header only.
    `min_side`: the shortest side the caller needs; a JPEG is then decoded at the largest
    reduction that keeps its short side at least that long. None: full resolution."""
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"Image is {header.width}x{header.height} pixels, more than the {max_pixels} pixel "
            "limit (PICMETRIC_MAX_IMAGE_PIXELS); send a smaller photo."
        )
    factor, flags = 1, _FULL
    if header.format == "JPEG":
        if jpeg_scans(data, max_jpeg_scans) > max_jpeg_scans:
            raise UnsupportedImage(
                f"The JPEG has more than {max_jpeg_scans} scans, the most the gateway decodes "
                "(PICMETRIC_MAX_JPEG_SCANS; ordinary progressive JPEGs have about 10): save it "
                "again as a baseline or standard progressive JPEG."
            )
        if min_side is not None:
            short = min(header.width, header.height)
            fitting = ((k, f) for k, f in _REDUCED if -(-short // k) >= min_side)  # ceil
            factor, flags = next(fitting, (1, _FULL))
    return DecodePlan(header, factor, flags)


def decode_rgb(
    data: bytes,
    max_pixels: int,
    min_side: int | None = None,
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
) -> DecodedImage:
    """Decode to RGB uint8 (grey and alpha images included), after `plan_decode`'s checks."""
    return decode_planned(data, plan_decode(data, max_pixels, max_jpeg_scans, min_side))


def decode_planned(data: bytes, plan: DecodePlan) -> DecodedImage:
    """Decode as `plan` says (grey and alpha images become RGB uint8)."""
    header, factor, flags = plan.header, plan.factor, plan.flags
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), flags | cv2.IMREAD_COLOR_RGB)
    if rgb is None or rgb.size == 0:
        raise UnsupportedImage(f"The {header.format} image is corrupt or truncated.")
    if factor == 1:
        return DecodedImage(rgb, rgb.shape[1], rgb.shape[0])
    # OpenCV applied the EXIF orientation to the pixels; the photo's size follows it.
    if header.turned:
        return DecodedImage(rgb, header.height, header.width)
    return DecodedImage(rgb, header.width, header.height)
