"""What of an upload is kept: a new file rebuilt from what is known to be safe, never the upload
less what a list names. Kept: the compressed pixel data (copied, never re-encoded), what decoding
it needs (a JPEG's tables, frame and scans; a PNG's palette and transparency; a HEIF's item
properties), the orientation (a fresh EXIF block holding nothing else, or HEIF's irot/imir) and
the colour profile. Everything else is dropped: EXIF, XMP, IPTC, comments, maker's notes,
thumbnails, a JPEG's further MPF images (gain maps), unknown chunks, boxes and items, bytes after
the image. A file this rebuild cannot walk completely and strictly, the way the decoders do, is
refused: what it holds cannot be told apart from the pixels.

One module per container: `_jpeg`, `_png`, `_webp`, `_heif` (HEIC/HEIF and AVIF)."""

from __future__ import annotations

from gateway.errors import UnsupportedImage
from gateway.images._heif import Malformed
from gateway.images.decode import ImageHeader, read_header
from gateway.images.privacy import _heif, _jpeg, _png, _webp
from gateway.images.privacy._walk import Refused

# The formats an upload is kept in, as error messages and the README name them.
KEPT_FORMATS = "JPEG, PNG, WebP, HEIC/HEIF or AVIF"


def strip_identifying(data: bytes, known: ImageHeader | None = None) -> bytes:
    """The file kept of upload `data`: rebuilt from its pixel data, orientation and colour profile
    alone (gateway.images.privacy). UnsupportedImage for any other format, and for a file that
    cannot be walked completely and strictly. `known`: `data`'s header, when the caller has read
    it already."""

    def header() -> ImageHeader:
        """The photo's header as the gateway reads it (gateway.images.decode), asked for once the
        walk has succeeded: the orientation the gateway applies is the one fact of its EXIF kept."""
        return known if known is not None else read_header(data)

    try:
        if data.startswith(b"\xff\xd8"):
            return _jpeg.rebuild(data, header)
        if data.startswith(_png.SIGNATURE):
            return _png.rebuild(data, header)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp.rebuild(data, header)
        if data[4:8] == b"ftyp":
            return _heif.rebuild(data)
    except (Refused, Malformed) as exc:
        raise UnsupportedImage(
            f"The upload cannot be kept without its location and identifying metadata: {exc}. "
            f"Uploads are kept as {KEPT_FORMATS} laid out as the standard says; save the photo "
            "again with any editor or camera app."
        ) from exc
    raise UnsupportedImage(
        f"Uploads are kept only as {KEPT_FORMATS}, rebuilt without their location and "
        "identifying metadata; save the photo as one of them to keep it."
    )
