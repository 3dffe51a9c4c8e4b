"""The one reader of HEIF's structure (gateway.images._heif) and its two users, the size check
(_heif_boxes.coded_image) and the privacy rebuild (privacy.strip_identifying), over real files
pillow-heif and libavif wrote, mutated where their boxes lie."""

from __future__ import annotations

import functools
import io

import numpy as np
import pillow_heif
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from gateway.errors import UnsupportedImage
from gateway.images import _heif
from gateway.images._heif_boxes import CodedImage, coded_image
from gateway.images.privacy import strip_identifying
from tests.utils.heif_files import boxes

pillow_heif.register_heif_opener()

FILES = ["HEIF", "HEIF-grid", "AVIF"]
Edit = tuple[int, int, int]  # (what, where in the boxes, value)


@functools.cache
def real_file(name: str) -> bytes:
    """A photo with EXIF (a GPS position) and XMP: its image, alpha plane and metadata items;
    "HEIF-grid" an RGB one (pillow-heif writes no grid with alpha) in 64 px tiles."""
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 0.0)})
    rng = np.random.default_rng(0)
    mode = "RGB" if name == "HEIF-grid" else "RGBA"
    image = Image.fromarray(rng.integers(0, 256, (96, 130, len(mode)), np.uint8), mode)
    pillow_heif.options.GRID_TILE_SIZE = 64 if name == "HEIF-grid" else 0
    try:
        buffer = io.BytesIO()
        options = {"speed": 10} if name == "AVIF" else {}
        image.save(
            buffer, format=name[:4], quality=50, exif=exif.tobytes(), xmp=b"<x:xmpmeta/>", **options
        )
    finally:
        pillow_heif.options.GRID_TILE_SIZE = 0
    return buffer.getvalue()


def mutated(data: bytes, edits: list[Edit]) -> bytes:
    """`data` with each edit applied within its boxes after ftyp's header (which says it is a
    HEIF), before mdat: a byte set, a 32-bit field set to a value a hostile header uses, bytes
    put in or taken out, or the file cut short."""
    head = next(start for kind, start, _ in boxes(data, 0, len(data)) if kind == b"mdat")
    out = bytearray(data)
    for what, where, value in edits:
        if len(out) <= 8:
            break
        at = 8 + where % (min(head, len(out)) - 8)
        if what == 0:
            out[at] = value & 0xFF
        elif what == 1:
            word = (0, 1, 7, 8, 16, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, len(out), value)[value % 10]
            out[at : at + 4] = (word & 0xFFFFFFFF).to_bytes(4, "big")
        elif what == 2:
            out[at:at] = value.to_bytes(4, "big")[: 1 + value % 4]
        elif what == 3:
            del out[at : at + 1 + value % 16]
        else:
            del out[at:]
    return bytes(out)


def _refused_by_reader(refusal: UnsupportedImage | None) -> bool:
    return refusal is not None and isinstance(refusal.__cause__, _heif.Malformed)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's EXIF
@pytest.mark.parametrize("name", FILES)
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(0, 0xFFFFFFFF)),
        max_size=3,
    )
)
@example(edits=[])
def test_both_users_of_the_reader_are_total_and_agree(name: str, edits: list[Edit]) -> None:
    """Property: over mutated real files, the reader reads or says Malformed; the size check and
    the rebuild each answer or refuse with UnsupportedImage (any other exception fails the
    test); both refuse, naming the reader's reason, exactly when the reader cannot read the
    structure; and a rebuilt file is itself read."""
    data = mutated(real_file(name), edits)
    try:
        _heif.read(data)
        malformed = None
    except _heif.Malformed as exc:
        malformed = exc
    size: CodedImage | UnsupportedImage
    kept: bytes | UnsupportedImage
    try:
        size = coded_image(data, "HEIF")
    except UnsupportedImage as exc:
        size = exc
    try:
        kept = strip_identifying(data)
    except UnsupportedImage as exc:
        kept = exc
    for answer in (size, kept):
        refused = answer if isinstance(answer, UnsupportedImage) else None
        assert _refused_by_reader(refused) == (malformed is not None), (answer, malformed)
        assert malformed is None or str(malformed) in str(refused)
    if isinstance(kept, bytes):
        _heif.read(kept)


@pytest.mark.parametrize("name", FILES)
def test_both_users_answer_for_the_real_files(name: str) -> None:
    """The unmutated files: the size check counts their pixels and the rebuild keeps the
    primary image, its tiles or its alpha plane, and neither EXIF nor XMP."""
    data = real_file(name)
    heif = _heif.read(data)
    kinds = {item.type for item in heif.items.values()}
    assert {b"Exif", b"mime"} <= kinds and (b"grid" in kinds) == (name == "HEIF-grid")
    coded = coded_image(data, "HEIF")
    assert (coded.width, coded.height) == (130, 96) and coded.pixels >= 130 * 96
    kept = _heif.read(strip_identifying(data))
    assert {item.type for item in kept.items.values()} == kinds - {b"Exif", b"mime"}
    assert any(kept.is_alpha(item) for item in kept.items) == (name != "HEIF-grid")
