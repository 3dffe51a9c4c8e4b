"""Phone formats, decoded: HEIC/HEIF, AVIF and JPEGs with a Multi-Picture segment, written here by
real encoders (tests/utils/phone_formats.py); orientation applied once for every format; ICC
profiles converted to sRGB; EXIF read from each container; limits from the header alone; GIF and
animated or multi-page images refused by name."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageCms
from pillow_heif.as_plugin import HeifImageFile

from gateway.errors import ImageTooLarge, UnsupportedImage
from gateway.images.decode import ACCEPTED_FORMATS, decode_rgb, plan_decode, read_header
from tests.utils.decode_memory import decode_peak_bytes
from tests.utils.phone_formats import PhoneFiles, display_p3, encode
from tests.utils.real_photos import real_photo

FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "HEIF", "AVIF")
LOSSLESS = ("PNG", "TIFF")


def _upright(width: int = 96, height: int = 64) -> np.ndarray:
    """Smooth, and different in every corner, so any wrong turn or flip shows."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, 255 - (x + y) / 2], axis=2)
    return pixels.astype(np.uint8)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_shows_every_format_upright_for_every_orientation(
    format: str, orientation: int
) -> None:
    """Oracle: the upright picture it was made from (within the encoder's loss); the size the
    decode and the header report is the upright one. HEIF and AVIF store the orientation in
    irot/imir boxes, the others in EXIF: either is applied once."""
    upright = _upright()
    data = encode(upright, format, orientation, quality=95)
    image = decode_rgb(data, max_pixels=10_000)
    assert image.rgb.shape == upright.shape, (format, orientation)
    assert (image.width, image.height) == (96, 64)
    error = np.abs(image.rgb.astype(int) - upright).mean()
    assert error < (0.5 if format in LOSSLESS else 4), (format, orientation, error)


@pytest.mark.parametrize("format", ("HEIF", "AVIF", "MPO"))
def test_phone_formats_decode_to_the_photos_pixels(format: str) -> None:
    """A 1 MP real photo: the decode is the photo within the codec's loss at quality 90 (mean
    error < 4: the photo carries sensor noise of sigma 3)."""
    photo = real_photo(1)
    image = decode_rgb(encode(photo, format, quality=90), max_pixels=2_000_000)
    assert image.rgb.shape == photo.shape and image.full_resolution
    assert np.abs(image.rgb.astype(int) - photo).mean() < 4


def test_a_jpeg_with_a_multi_picture_segment_is_a_jpeg_decoded_reduced() -> None:
    """Pillow names it MPO; its first image is the photo, and the reduced decode applies."""
    data = encode(real_photo(1), "MPO", quality=90)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    plan = plan_decode(data, 2_000_000, 64, min_side=224)
    assert plan.header.format == "JPEG" and plan.factor == 2
    image = decode_rgb(data, 2_000_000, min_side=224)
    assert image.rgb.shape == (432, 576, 3) and (image.width, image.height) == (1152, 864)


@pytest.mark.parametrize("format", ("PNG", "JPEG", "HEIF", "AVIF", "TIFF", "WEBP"))
def test_a_display_p3_photo_decodes_to_the_srgb_values_imagecms_gives(format: str) -> None:
    """Oracle: Pillow's own decode of the same file, converted by ImageCms.profileToProfile from
    the embedded Display P3 profile (written from P3's primaries) to sRGB; within one level for
    the same decoder, within two where OpenCV and Pillow decode a JPEG (their upsampling
    differs)."""
    profile = display_p3()
    data = encode(real_photo(1), format, icc_profile=profile, quality=90)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.info["icc_profile"] == profile
        p3 = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        want = np.asarray(ImageCms.profileToProfile(stored, p3, ImageCms.createProfile("sRGB")))
    got = decode_rgb(data, max_pixels=2_000_000).rgb
    difference = np.abs(got.astype(int) - want)
    assert difference.max() <= (2 if format == "JPEG" else 1), difference.max()
    assert difference.mean() < 0.5


def test_an_srgb_profile_leaves_the_pixels_as_they_are() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = _upright()
    tagged = decode_rgb(encode(photo, "PNG", icc_profile=srgb), 10_000).rgb
    assert np.array_equal(tagged, photo)


@pytest.mark.parametrize("format", ("JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF"))
def test_header_reads_exif_of_every_format(format: str) -> None:
    """Orientation, a GPS position and the time taken, read from the container, no pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)})
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 12:30:00"
    buffer = io.BytesIO()
    Image.fromarray(_upright()).save(buffer, format=format, exif=exif.tobytes())
    header = read_header(buffer.getvalue())
    assert header.has_location and header.taken_at == "2024-05-01T12:30:00"
    # A HEIF's orientation is in its irot box, which libheif applies, and OpenCV's TIFF decoder
    # applies a TIFF's (Pillow reports both sizes upright); the gateway applies the others.
    applied_by_decoder = format in ("HEIF", "TIFF")
    assert header.orientation == (1 if applied_by_decoder else 6)
    assert (header.width, header.height) == ((64, 96) if applied_by_decoder else (96, 64))


def _animated(format: str) -> bytes:
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format, save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@pytest.mark.parametrize("format", ("GIF", "PNG", "WEBP", "AVIF", "TIFF"))
def test_gif_and_animated_or_multi_page_images_are_refused_naming_what_is_accepted(
    format: str,
) -> None:
    with pytest.raises(UnsupportedImage) as refused:
        read_header(_animated(format))
    assert refused.value.status_code == 415
    assert ACCEPTED_FORMATS in str(refused.value)
    if format == "TIFF":  # refused from its first IFD, its pages not counted
        assert "more than one page" in str(refused.value)
    elif format != "GIF":
        assert "3 frames" in str(refused.value)


def test_an_over_limit_heic_is_refused_from_its_header_before_decoding(
    phone_files: PhoneFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 12 MP HEIC in 48 tiles against a 10 MP limit: 413 naming the setting, in milliseconds
    (its decode takes about half a second), and no pixel decoded."""

    def no_load(self: Image.Image) -> None:
        raise AssertionError("decoded")

    data = phone_files.file("12mp", "HEIF")
    monkeypatch.setattr(HeifImageFile, "load", no_load)
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="PICMETRIC_MAX_IMAGE_PIXELS") as refused:
        decode_rgb(data, max_pixels=10_000_000)
    assert time.perf_counter() - started < 0.1
    assert refused.value.status_code == 413 and "4032x3024" in str(refused.value)


@pytest.mark.parametrize("format", ("HEIF", "AVIF"))
def test_decode_plan_memory_covers_what_a_12mp_phone_photo_takes(
    format: str, phone_files: PhoneFiles, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Oracle: the peak memory the photo's decode adds (tests/utils/decode_memory.py), the
    codec's libraries loaded first; counted within 30% above it. With a Display P3 profile and
    orientation 6, the worst case: the ICC strip and the turned copy."""
    profile = display_p3()
    data = phone_files.file("12mp", "HEIF")  # tiled, no profile: libheif's worst case, its tiles
    if format == "AVIF":
        data = encode(phone_files.photo("12mp"), "AVIF", 6, icc_profile=profile, quality=90)
    warm = tmp_path_factory.mktemp("warm") / "small"
    warm.write_bytes(encode(_upright(), format, icc_profile=profile))
    measured = decode_peak_bytes(data, warm)
    counted = plan_decode(data, 40_000_000, 64).memory
    assert measured <= counted < 1.3 * measured, (measured, counted)


def test_a_heif_with_several_images_is_read_as_its_primary_image() -> None:
    """A burst or a stereo pair in one HEIF: its primary image (pillow-heif marks the first one
    written) is the photo; the others are not refused as frames of an animation."""
    first, second = (
        Image.new("RGB", (64, 48), colour) for colour in ((200, 30, 30), (30, 30, 200))
    )
    buffer = io.BytesIO()
    first.save(buffer, format="HEIF", save_all=True, append_images=[second], quality=90)
    with Image.open(io.BytesIO(buffer.getvalue())) as stored:
        assert getattr(stored, "n_frames", 1) == 2
    rgb = decode_rgb(buffer.getvalue(), max_pixels=10_000).rgb
    assert np.abs(rgb.astype(int) - (200, 30, 30)).mean() < 6
