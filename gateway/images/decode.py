"""Bytes to an upright sRGB array: the format is sniffed from the bytes (never from headers), the
pixel count, EXIF and ICC profile are read from the image header before the full decode. OpenCV
decodes JPEG, PNG, WebP, BMP and TIFF straight to RGB; Pillow decodes HEIC/HEIF (pillow-heif's
libheif) and AVIF (Pillow's libavif), the primary image of either. A JPEG with a Multi-Picture
segment (Ultra HDR and Apple gain-map photos, cameras' MPO files) is a JPEG: its first image is
the photo. The orientation is applied once: here from EXIF (JPEG, PNG, WebP, and AVIF, whose
irot/imir boxes Pillow reports as an EXIF orientation); by the decoder for TIFF (libtiff, its
Orientation tag) and HEIF (libheif applies irot/imir, and pillow-heif resets the EXIF orientation
to 1, as the HEIF standard says the boxes win). A photo whose ICC profile is not sRGB (an
iPhone's Display P3) is converted to sRGB (littlecms). A JPEG that no model needs at full
resolution is decoded at 1/2, 1/4 or 1/8 of its size straight from its DCT coefficients (a 12 MP
photo for ResNet50 and YOLOv3 alone: 1008x756, in about a third of the time).

Before any pixel is decoded, `plan_decode` bounds the work and sizes the memory from the header:
the pixel count (PICMETRIC_MAX_IMAGE_PIXELS) and the longest side (PICMETRIC_MAX_IMAGE_SIDE:
libpng and OpenCV refuse longer ones); for a JPEG the number of scans, counted from its markers
(PICMETRIC_MAX_JPEG_SCANS: libjpeg passes over every coefficient of a component once per scan, so
4,000 repeated scans in 268 KB cost seconds of CPU in a decode that cannot be stopped); and the
bytes the decode will hold at its peak (`DecodePlan.memory`). The gateway reserves, from its
process-wide budget (gateway.admission.MemoryBudget) before decoding, the most that one analysis
holds at once: that peak, or the decoded photo with the quality figures' buffers and every model's
input beside it (gateway.pipeline.analysis.analysis_memory; an annotation adds its drawn copy and
JPEG). The limits and the counts read the pixels the decoder allocates: for HEIF and AVIF, the coded
images read from the boxes (gateway.images._heif_boxes: a grid's tiles, before a clean aperture
crops them; an AV1 frame's size from its sequence header), not the size the library reports; a file
whose sizes disagree is refused. libheif's security limits stay at their defaults (pillow-heif
exposes only turning them off; libheif refuses an HEVC image larger than its ispe before decoding
it), as do libavif's (Pillow exposes none).

Reading the header is bounded and total: what the libraries would walk without bounds is walked
here first (a TIFF's first IFD, whose next-IFD offset refuses a second page, as Pillow's page count
takes time quadratic in the pages; a PNG's chunks, their metadata inflated within
MAX_METADATA_BYTES, gateway.images._png_text); the XMP packet and ICC profile of any format count
against the same budget, and an ICC profile is taken only as bytes; whatever a parser raises on a
hostile header is UnsupportedImage (415), never a 500."""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from pillow_heif import register_heif_opener

from gateway.errors import ImageTooLarge, PicmetricError, UnsupportedImage
from gateway.images import ACCEPTED_FORMATS, _png_text
from gateway.images._heif_boxes import CodedImage, coded_image
from gateway.images._pixels import orient, pillow_rgb, srgb_transform, strip_rows, to_srgb

_OPENCV_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
_PILLOW_FORMATS = ("HEIF", "AVIF")
DECODABLE_FORMATS = _OPENCV_FORMATS + _PILLOW_FORMATS
# The formats whose headers Pillow reads here, in the order Pillow tries them by default (its JPEG
# reader opens an MPO; a GIF is opened to be refused by name): Pillow's other plugins, dozens of
# formats nobody sends, never see a byte.
_OPENED_FORMATS = ("HEIF", "AVIF", "BMP", "GIF", "PNG", "JPEG", "TIFF", "WEBP")
# The formats whose frame count Pillow reads from a header field (a GIF's and a TIFF's are walked).
_ANIMATED_FORMATS = ("PNG", "WEBP", "AVIF")
# Peak bytes per pixel of a Pillow decode (DecodePlan.memory), measured at 12 MP with
# benchmarks/phone_formats.py and tests/gateway/images/test_decode_formats.py.
_PILLOW_BYTES_PER_PIXEL = {"HEIF": 9, "AVIF": 10}
# The primary image only: no thumbnails, depth maps or auxiliary images (gain maps, mattes).
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit, before decoding


# EXIF orientations that turn the picture by 90 degrees (width and height swap).
_QUARTER_TURNS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_GPS_LATITUDE, _GPS_LONGITUDE = 2, 4
# Starts with a literal, and each \s* stops at the first other byte: linear in the packet, which
# MAX_METADATA_BYTES bounds (re holds the GIL while it searches).
_XMP_LATITUDE = re.compile(rb"GPSLatitude(?:\s*=\s*[\"']\s*[^\"'\s]|\s*>\s*[^<\s])")
# The metadata one photo's header may carry, inflated: PNG text, ICC profile and EXIF chunks
# together (gateway.images._png_text), and the XMP packet and ICC profile of any format. A phone's
# photo carries tens of kilobytes.
MAX_METADATA_BYTES = 4 * 1024 * 1024
_TIFF = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
_MOST_TIFF_TAGS = 4096  # in its first IFD; a camera's TIFF has a few dozen
_DATETIME_ORIGINAL, _DATETIME = 0x9003, 0x0132
# Decoding at 1/factor of the size, largest first (IMREAD_COLOR_RGB is added to every flag: it
# decodes straight to RGB, without a BGR-to-RGB pass).
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)
_FULL = cv2.IMREAD_COLOR
# Every decode with OpenCV: straight to RGB, orientation left to us (OpenCV 4.11 applies EXIF
# orientation to JPEG and PNG but not to WebP).
_OPENCV = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
# libjpeg's standard progressive script has 10 scans (6 for grey); encoders that tune theirs
# (mozjpeg, jpegli) stay within a few dozen.
DEFAULT_MAX_JPEG_SCANS = 64
# The longest side decoded (PICMETRIC_MAX_IMAGE_SIDE): libjpeg's largest, so that every photo
# analysed can be answered drawn as a JPEG (/v1/annotate).
DEFAULT_MAX_IMAGE_SIDE = 65_500
# A JPEG marker (0xFF then a code) that is neither a stuffed 0xFF byte inside entropy-coded data
# (FF 00), a restart marker (FF D0-D7) nor a fill byte (FF FF).
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xDA)}  # markers without a length field
# Before a JPEG's first scan, Pillow's header reader (Python) steps over stray bytes one at a time
# and over segments one at a time: 20 MB of fill bytes held the GIL for 11 s, 500,000 comments
# for 1 s. Real files have a few dozen segments there (an extended XMP packet: ~70) and no stray
# bytes; libjpeg skips a few with a warning.
_MOST_JPEG_HEADER_SEGMENTS = 1024
_MOST_JPEG_STRAY_BYTES = 4096
# From a position between segments: stray bytes, the marker's 0xFF (and fill bytes), its code.
_NEXT_JPEG_MARKER = re.compile(rb"[^\xff]*\xff+([^\x00\xff])")


@dataclass(frozen=True)
class ImageHeader:
    format: str  # Pillow's name; a JPEG with a Multi-Picture segment ("MPO") is "JPEG"
    width: int  # as stored (a HEIF's: with its irot/imir applied by libheif)
    height: int
    orientation: int = 1  # EXIF orientation (1-8) we apply after decoding
    bands: int = 3  # samples per pixel as stored (RGBA: 4)
    sample_bytes: int = 1  # bytes per sample as stored (16-bit: 2)
    progressive: bool = False  # a progressive JPEG: its decoder holds every DCT coefficient
    has_location: bool = False  # its EXIF carries a GPS position (never kept here)
    taken_at: str | None = None  # EXIF DateTimeOriginal as ISO 8601, the camera's local time
    icc_profile: bytes | None = None  # the embedded ICC profile, if any
    coded: CodedImage | None = None  # a HEIF's or AVIF's image as its decoder allocates it

    @property
    def turned(self) -> bool:
        """The orientation swaps width and height."""
        return self.orientation in _QUARTER_TURNS

    @property
    def pixels(self) -> int:
        """The pixels the decoder allocates: a HEIF's or AVIF's coded images (its tiles, its
        alpha, before a clean aperture crops them), else the image's own."""
        return self.coded.pixels if self.coded else self.width * self.height

    def size_text(self) -> str:
        """The size as a person reads it in an error message: the coded one where it differs."""
        text = f"{self.width}x{self.height} pixels"
        if self.coded and self.coded.pixels != self.width * self.height:
            coded = self.coded
            text += f", coded as {coded.width}x{coded.height} ({coded.pixels} pixels decoded)"
        return text


@dataclass(frozen=True)
class DecodedImage:
    """RGB pixels [h, w, 3] uint8, and the photo's own size as shown (EXIF orientation applied),
    which `rgb` may be a reduced decode of."""

    rgb: np.ndarray
    width: int
    height: int
    # Whether `rgb` has every pixel: a field, so that the steps after the decode read it without
    # calling back into this module.
    full_resolution: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        full = self.rgb.shape[:2] == (self.height, self.width)
        object.__setattr__(self, "full_resolution", full)


def read_header(data: bytes) -> ImageHeader:
    """The format, size, EXIF and ICC profile from the container, without decoding pixels; the
    containers the libraries would walk without bounds (HEIF/AVIF boxes, PNG chunks, TIFF IFDs)
    walked here first. Total: whatever a hostile header makes a parser raise is UnsupportedImage
    (MemoryError aside)."""
    try:
        return _read_header(data)
    except (PicmetricError, MemoryError):
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        raise UnsupportedImage(
            f"The data is not an image we can read; send {ACCEPTED_FORMATS}."
        ) from exc
    except Exception as exc:  # a parser's bug met by a hostile header: still the file's fault
        raise UnsupportedImage(
            f"The image's header cannot be read ({type(exc).__name__}); send {ACCEPTED_FORMATS}."
        ) from exc


def _read_header(data: bytes) -> ImageHeader:
    coded = None
    if data[4:8] == b"ftyp":
        coded = coded_image(data, "AVIF" if data[8:12] in (b"avif", b"avis") else "HEIF")
    elif data.startswith(_png_text.SIGNATURE):
        _check_metadata(_png_text.metadata_bytes(data, MAX_METADATA_BYTES), "PNG text chunks")
    elif data[:4] in _TIFF:
        _check_single_page(data)
    elif data[:2] == b"\xff\xd8":
        _check_jpeg_header(data)
    with Image.open(io.BytesIO(data), formats=_OPENED_FORMATS) as image:
        format = "JPEG" if image.format == "MPO" else image.format or ""
        exif = _exif(image)
        # Pillow counts a TIFF's pages by walking them all (quadratic): _check_single_page has
        # refused more than one from the first IFD.
        frames = getattr(image, "n_frames", 1) if format in _ANIMATED_FORMATS else 1
        xmp, icc = image.info.get("xmp"), image.info.get("icc_profile")
        xmp = xmp.encode("utf-8", "replace") if isinstance(xmp, str) else xmp
        xmp = xmp if isinstance(xmp, bytes) else None
        icc = icc if isinstance(icc, bytes) and icc else None  # a TIFF tag of another type: none
        _check_metadata(len(xmp or b"") + len(icc or b""), "XMP packet and ICC profile")
        orientation, has_location, taken_at = _exif_facts(exif, xmp)
        header = ImageHeader(
            format,
            image.width,
            image.height,
            # OpenCV's TIFF decoder (libtiff) turns the pixels by the TIFF's Orientation tag
            # itself, whatever the flags say.
            orientation if format != "TIFF" else 1,
            bands=len(image.getbands()),
            sample_bytes=_sample_bytes(image),
            progressive=format == "JPEG" and bool(image.info.get("progressive")),
            has_location=has_location,
            taken_at=taken_at,
            icc_profile=icc,
            coded=coded if format in _PILLOW_FORMATS else None,
        )
    if header.format not in DECODABLE_FORMATS:
        raise UnsupportedImage(
            f"{header.format or 'This'} images are not supported; send {ACCEPTED_FORMATS}."
        )
    # Frames are counted for animations only (_ANIMATED_FORMATS): a HEIF's other top-level images
    # (a burst, a stereo pair) are not the photo, libheif decodes the primary one; an MPO's second
    # image is a gain map or another view; a TIFF's second page was refused above.
    if frames > 1:
        raise UnsupportedImage(
            f"This animated {header.format} has {frames} frames; send one photo: "
            f"{ACCEPTED_FORMATS}."
        )
    return header


def _check_metadata(size: int, what: str) -> None:
    if size > MAX_METADATA_BYTES:
        raise UnsupportedImage(
            f"The image's metadata ({what}) is more than the {MAX_METADATA_BYTES >> 20} MiB the "
            "gateway reads; save the photo again without it, or export it as JPEG."
        )


def _check_jpeg_header(data: bytes) -> None:
    """Refuse a JPEG whose segments before its first scan are more than Pillow's header reader
    should walk: too many segments, or too many stray bytes between them. Walked here with
    regular expressions (C, bounded windows), so the refusal itself costs microseconds."""
    position, segments, stray = 2, 0, 0
    while True:
        window = min(len(data), position + _MOST_JPEG_STRAY_BYTES - stray + 2)
        found = _NEXT_JPEG_MARKER.match(data, position, window)
        if found is None:
            if window == len(data):
                return  # truncated: the decoder says so
            raise UnsupportedImage(
                f"The JPEG has more than {_MOST_JPEG_STRAY_BYTES} stray bytes between its "
                "segments before the image data; it is malformed: save it again."
            )
        stray += found.end() - position - 2
        code, position = found.group(1)[0], found.end()
        if code in (_SOS, _EOI):
            return
        segments += 1
        if segments > _MOST_JPEG_HEADER_SEGMENTS:
            raise UnsupportedImage(
                f"The JPEG has more than {_MOST_JPEG_HEADER_SEGMENTS} segments before its image "
                "data (ordinary photos have a few dozen); save it again without its extra "
                "metadata or comments."
            )
        if code not in _STANDALONE:
            position += int.from_bytes(data[position : position + 2], "big")


def _check_single_page(data: bytes) -> None:
    """Refuse a TIFF of more than one page from its first IFD: its next-IFD offset is not 0."""
    big = data[2:4] in (b"\0+", b"+\0")
    order = "<" if data[:2] == b"II" else ">"
    count_format, offset_format, entry = ("Q", "Q", 20) if big else ("H", "I", 12)
    (ifd,) = struct.unpack_from(order + offset_format, data, 8 if big else 4)
    (tags,) = struct.unpack_from(order + count_format, data, ifd)
    if tags > _MOST_TIFF_TAGS:
        raise UnsupportedImage(
            f"This TIFF's first IFD has {tags} tags, more than the {_MOST_TIFF_TAGS} the gateway "
            "reads; save it again."
        )
    next_at = ifd + struct.calcsize(order + count_format) + tags * entry
    (next_ifd,) = struct.unpack_from(order + offset_format, data, next_at)
    if next_ifd:
        raise UnsupportedImage(
            f"This multi-page TIFF has more than one page; send one photo: {ACCEPTED_FORMATS}."
        )


def _exif(image: Image.Image) -> Image.Exif:
    """The image's EXIF where its container holds it apart from the pixels (JPEG APP1, TIFF
    IFD0, WebP/HEIF/AVIF boxes and chunks, a PNG eXIf chunk before the pixels); empty otherwise,
    as Pillow would decode a PNG to look for a later eXIf chunk."""
    if image.format == "PNG" and "exif" not in image.info:
        return Image.Exif()
    try:
        return image.getexif()
    except MemoryError:
        raise
    except Exception:
        return Image.Exif()  # a broken EXIF block does not make the photo unreadable


def _exif_facts(exif: Image.Exif, xmp: bytes | None) -> tuple[int, bool, str | None]:
    """Orientation, whether a GPS position is carried, and when the photo was taken; Pillow reads
    the GPS and EXIF IFDs when asked, and an IFD that cannot be read counts as absent."""
    try:
        return _orientation(exif), _has_location(exif, xmp), _taken_at(exif)
    except MemoryError:
        raise
    except Exception:
        return 1, _xmp_location(xmp), None


def _orientation(exif: Image.Exif) -> int:
    orientation = exif.get(_EXIF_ORIENTATION, 1)
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _has_location(exif: Image.Exif, xmp: bytes | None) -> bool:
    """A GPS position in the EXIF, or in the XMP packet."""
    gps = exif.get_ifd(_GPS_IFD)
    if gps.get(_GPS_LATITUDE) and gps.get(_GPS_LONGITUDE):
        return True
    return _xmp_location(xmp)


def _xmp_location(xmp: bytes | None) -> bool:
    """`exif:GPSLatitude` in the XMP packet, as an attribute or an element, with a value
    (gateway.images.privacy blanks it with spaces)."""
    return xmp is not None and _XMP_LATITUDE.search(xmp) is not None


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
        # a real JPEG has a few markers a scan, and its header segments (_check_jpeg_header)
        if scans > most or markers > 8 * most + _MOST_JPEG_HEADER_SEGMENTS:
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
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the decoded array, orientation applied."""
        header, factor = self.header, self.factor
        height, width = -(-header.height // factor), -(-header.width // factor)
        return (width, height) if header.turned else (height, width)

    @property
    def output_bytes(self) -> int:
        """The decoded RGB uint8 array."""
        height, width = self.output_size
        return height * width * 3

    @property
    def memory(self) -> int:
        """Peak bytes the decode holds, plus 15% for the decoders' own buffers. OpenCV: the RGB
        output, plus the stored samples where the decoder may keep them whole (a TIFF in one
        strip; a progressive JPEG's coefficients, 2 bytes per sample; a JPEG's output-size
        buffer in libjpeg), counted at full size (a
        6323x6323 16-bit RGBA TIFF in one strip: 440 MB of both, 487 MB measured), plus a second
        output while the orientation is applied. Pillow (HEIF, AVIF): what the decoder, Pillow's
        image (4 bytes a pixel) and our array hold at once, per pixel as measured at 12 MP
        (_PILLOW_BYTES_PER_PIXEL), plus Pillow's RGB copy of a grey or RGBA image. Either: a
        strip of the ICC conversion. Only the decode: what an analysis holds after it, beside the
        photo, is gateway.pipeline.analysis.analysis_memory's."""
        header, output = self.header, self.output_bytes
        pixels = header.pixels
        if header.format in _PILLOW_FORMATS:
            peak = pixels * _PILLOW_BYTES_PER_PIXEL[header.format]
            peak += pixels * 4 if header.bands != 3 else 0
        else:
            stored = pixels * header.bands * header.sample_bytes
            if header.format == "JPEG":
                # libjpeg's own output-size buffer (measured: a 12 MP baseline JPEG peaks at
                # twice the RGB output, at every reduction), and a progressive one's coefficients.
                stored = output + (pixels * header.bands * 2 if header.progressive else 0)
            peak = stored + output + (output if header.orientation != 1 else 0)
        if header.icc_profile:
            # a strip in Pillow (4 B/px) and back (3 B/px)
            peak += min(strip_rows(header.width), header.height) * header.width * 8
        return peak * 23 // 20


def plan_decode(
    data: bytes,
    max_pixels: int,
    max_jpeg_scans: int,
    min_side: int | None = None,
    max_side: int = DEFAULT_MAX_IMAGE_SIDE,
) -> DecodePlan:
    """Check the photo against the per-photo limits and choose its decode, from the header only.
    `min_side`: the shortest side the caller needs; a JPEG is then decoded at the largest
    reduction that keeps its short side at least that long. None: full resolution."""
    header = read_header(data)
    if header.pixels > max_pixels:
        raise ImageTooLarge(
            f"Image is {header.size_text()}, more than the {max_pixels} pixel limit "
            "(PICMETRIC_MAX_IMAGE_PIXELS); send a smaller photo."
        )
    if max(header.width, header.height) > max_side:
        raise ImageTooLarge(
            f"Image is {header.width}x{header.height} pixels, a side longer than the {max_side} "
            "px limit (PICMETRIC_MAX_IMAGE_SIDE); send a photo with no side over it."
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
    """Decode as `plan` says: grey and alpha images become RGB uint8, ICC profiles sRGB, and the
    orientation is applied."""
    header = plan.header
    if header.format in _PILLOW_FORMATS:
        rgb = _pillow_decode(data, header)
    else:
        rgb = cv2.imdecode(np.frombuffer(data, np.uint8), plan.flags | _OPENCV)
        if rgb is None or rgb.size == 0:
            raise UnsupportedImage(f"The {header.format} image is corrupt or truncated.")
    if header.icc_profile and (transform := srgb_transform(header.icc_profile)) is not None:
        to_srgb(rgb, transform)
    rgb = orient(rgb, header.orientation)
    if plan.factor == 1:
        return DecodedImage(rgb, rgb.shape[1], rgb.shape[0])
    if header.turned:
        return DecodedImage(rgb, header.height, header.width)
    return DecodedImage(rgb, header.width, header.height)


def _pillow_decode(data: bytes, header: ImageHeader) -> np.ndarray:
    """A HEIF's or AVIF's primary image as stored (libheif has applied a HEIF's irot/imir)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = pillow_rgb(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, RuntimeError) as exc:
        raise UnsupportedImage(f"The {header.format} image is corrupt or truncated.") from exc
    if rgb.shape[:2] != (header.height, header.width):
        raise UnsupportedImage(
            f"The {header.format} image decodes to {rgb.shape[1]}x{rgb.shape[0]} pixels, not the "
            f"{header.width}x{header.height} its header declares: it is corrupt."
        )
    return rgb
