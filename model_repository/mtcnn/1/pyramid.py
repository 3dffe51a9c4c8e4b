"""The image pyramid as the mtcnn package makes it: its scales, each level TensorFlow's area
resize (computed from running sums down the image, from tables, `AreaTables`, that also feed
`mtcnn_pyramid_pnet`'s graph), the pixel budgets a request must stay within, and the bands of rows
that PNet sees one request at a time.

The package's pyramid has `round(log(min_side / 12) / log(1 / scale_factor) - 1)` levels starting
at scale `12 / min_face_size`; a level's size is `int(side * scale)`. Unlike the package, levels
smaller than PNet's 12-px window are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .parameters import CascadeError

PNET_WINDOW = 12  # PNet's receptive field, and the smallest image it takes
PNET_STRIDE = 2
# Budgets that keep one request from exhausting the instance's memory or time. An image over
# MAX_IMAGE_PIXELS (48-megapixel photos pass), or whose pyramid totals more than
# MAX_PYRAMID_PIXELS over all levels (min_face_size 12 on a 4000x3000 photo passes), is refused.
MAX_IMAGE_PIXELS = 50_000_000
MAX_PYRAMID_PIXELS = 32_000_000
# Output rows of a pyramid level made at a time: a band's temporaries (a few MB for a 12 MP
# photo) stay in cache.
ROWS_PER_BAND = 32
# Pixels of one PNet request: larger pyramid levels go in bands of rows, so PNet's memory stays
# bounded whatever the photo's size (its feature maps take ~130 bytes a pixel: a 12 MP photo's
# first level whole would take 0.6 GB).
PNET_BAND_PIXELS = 1_000_000


def pyramid_scales(
    height: int, width: int, min_face_size: float, scale_factor: float
) -> list[float]:
    """The package's pyramid scales, without levels smaller than PNet's window."""
    min_side = min(height, width)
    if min_side < PNET_WINDOW:
        return []
    count = round(-((np.log(min_side / PNET_WINDOW) / np.log(scale_factor)) + 1))
    scales = (PNET_WINDOW / min_face_size) * scale_factor ** np.arange(max(count, 0))
    return [float(s) for s in scales if min(level_size(height, width, float(s))) >= PNET_WINDOW]


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """A pyramid level's size: the package truncates `side * scale` (TensorFlow's int cast)."""
    return int(height * scale), int(width * scale)


def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices [out, taps] and overlap weights [out, taps] of TensorFlow's area resize
    along one axis (float32 arithmetic, out-of-range indices clamped as TensorFlow does)."""
    scale = np.float32(in_size / out_size)
    position = np.arange(out_size, dtype=np.float32)
    start = position * scale
    end = (position + 1) * scale
    first = np.floor(start).astype(np.int64)
    last = np.ceil(end).astype(np.int64)
    taps = int(np.max(last - first))
    index = first[:, None] + np.arange(taps)[None, :]
    i = index.astype(np.float32)
    s, e = start[:, None], end[:, None]
    weight = np.where(
        i < s,
        np.where(i + 1 > e, scale, i + 1 - s),
        np.where(i + 1 > e, e - i, np.float32(1.0)),
    ).astype(np.float32)
    weight[index >= last[:, None]] = 0
    return np.clip(index, 0, in_size - 1), weight


def _area_edges(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The out_size + 1 cell edges of TensorFlow's area resize along one axis (edge i at
    i * in_size / out_size, in float32 as TensorFlow computes it): the input pixel each edge
    falls in, and the part of that pixel after the edge."""
    edge = np.arange(out_size + 1, dtype=np.float32) * np.float32(in_size / out_size)
    edge = np.minimum(edge, np.float32(in_size))
    index = np.minimum(np.floor(edge).astype(np.intp), in_size - 1)
    return index, np.float32(1) - (edge - index.astype(np.float32))


def running_sums(image: np.ndarray, heights: Iterable[int] = ()) -> np.ndarray:
    """Running sums down an HxWxC image (inclusive), as rows [H, C, W]; every pyramid level is
    made from them and the image (`area_level`). For 8-bit pixels, integers that may wrap: a
    level of `height` rows takes differences of sums at most a few rows apart (216 on a 12 MP
    photo's smallest level), exact modulo 2**16 while 255 times that is below 2**16, so then
    uint16 (half int32's memory and passes), int32 otherwise; float64 for other pixels. Without
    `heights`, for any level."""
    in_height = image.shape[0]
    if image.dtype == np.uint8:
        spans = (np.diff(_area_edges(in_height, h)[0]).max(initial=0) for h in heights)
        span = max(spans, default=in_height)
        dtype: type = np.uint16 if 255 * int(span) < 2**16 else np.int32
    else:
        dtype = np.float64
    rows = image.transpose(0, 2, 1)  # a view: summed row by row, no transposed copy
    sums: np.ndarray = np.empty(rows.shape, dtype)
    if in_height:
        sums[0] = rows[0]
    for i in range(1, in_height):  # one vector add per row: numpy's cumsum down axis 0 is slow
        np.add(sums[i - 1], rows[i], out=sums[i])
    return sums


@dataclass(frozen=True)
class AreaTables:
    """TensorFlow's area resize of an in_height x in_width image to height x width, as tables:
    the input row each of the height + 1 cell edges falls in and the part of that row after the
    edge; the input columns [width, taps] each output column overlaps and their weights, the area
    factor included."""

    row_index: np.ndarray
    row_rest: np.ndarray
    columns: np.ndarray
    column_weights: np.ndarray

    @classmethod
    def make(cls, in_height: int, in_width: int, height: int, width: int) -> AreaTables:
        row_index, row_rest = _area_edges(in_height, height)
        columns, column_weights = _area_taps(in_width, width)
        area = np.float32(height / in_height) * np.float32(width / in_width)
        return cls(row_index, row_rest, columns, column_weights * area)

    def band_inputs(self, image: np.ndarray, start: int, stop: int) -> dict[str, np.ndarray]:
        """The inputs of `mtcnn_pyramid_pnet` for output rows [start, stop) of this level of
        `image` (HxWx3 UINT8): the whole photo (the graph slices the rows it needs, so every band
        passes on the same tensor) and the band's tables."""
        return {
            "image": image,
            "row_index": self.row_index[start : stop + 1].astype(np.int64),
            "row_rest": self.row_rest[start : stop + 1],
            "column_index": self.columns.astype(np.int64),
            "column_weight": self.column_weights,
        }


def area_level(image: np.ndarray, sums: np.ndarray, height: int, width: int) -> np.ndarray:
    """`tf.image.resize(image, (height, width), method="area")`, channels first [C, height,
    width] float32, from the HxWxC image and `running_sums(image)`. Down the image each output
    row is a difference of two running sums (with the fractional pixels at its edges), so a
    level costs its own rows times the input width, not the input's whole height; across, the
    few overlapping input columns are weighted. Worked in bands of ROWS_PER_BAND output rows
    that stay in cache. `mtcnn_pyramid_pnet`'s graph does the same from the same tables."""
    in_height, channels, in_width = sums.shape
    tables = AreaTables.make(in_height, in_width, height, width)
    edge_dtype = np.float32 if image.dtype == np.uint8 else np.float64
    taps = tables.columns.shape[1]
    columns = tables.columns.T.ravel()  # tap by tap: one gather for all taps
    column_weights = np.ascontiguousarray(tables.column_weights.T)  # [taps, width]
    level = np.empty((channels, height, width), np.float32)
    by_row = level.transpose(1, 0, 2)  # [height, C, width], a view
    for start in range(0, height, ROWS_PER_BAND):
        stop = min(start + ROWS_PER_BAND, height)
        index = tables.row_index[start : stop + 1]
        rest = tables.row_rest[start : stop + 1, None, None]
        ends = sums[index]
        band = np.empty((stop - start, channels, in_width), np.float32)
        np.subtract(ends[1:], ends[:-1], out=band, casting="unsafe")  # whole pixels, exact
        partial: np.ndarray = np.empty((stop - start + 1, channels, in_width), edge_dtype)
        np.copyto(partial, image[index].transpose(0, 2, 1))  # converted as it is transposed
        partial *= rest  # the parts of the edge pixels after each edge
        band -= partial[1:]
        band += partial[:-1]
        # The columns are in range (clamped, as TensorFlow does): "clip" changes none of them
        # and skips numpy's bounds checks, which made the gather 1.4x slower.
        weighted = np.take(band, columns, axis=2, mode="clip")
        weighted = weighted.reshape(stop - start, channels, taps, width)
        weighted *= column_weights
        # Summed over the taps axis, not the last one: numpy then adds tap after tap, in order.
        np.sum(weighted, axis=2, out=by_row[start:stop])
    return level


def check_budget(height: int, width: int, scales: list[float]) -> None:
    """Refuse an image, or a pyramid over all its levels, above the pixel budgets; from sizes
    alone, so it runs before any pixel is converted."""
    if height * width > MAX_IMAGE_PIXELS:
        raise CascadeError(
            f"The image is {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}; "
            "send a smaller image."
        )
    total = sum(h * w for h, w in (level_size(height, width, s) for s in scales))
    if total > MAX_PYRAMID_PIXELS:
        raise CascadeError(
            f"The image pyramid would have {total:,} pixels in {len(scales)} levels for this "
            f"{width}x{height} image, more than {MAX_PYRAMID_PIXELS:,}; raise min_face_size, "
            "lower scale_factor or send a smaller image."
        )


def pyramid(image: np.ndarray, scales: list[float]) -> list[np.ndarray]:
    """The resampled levels [C, h, w], checked against the pixel budgets first."""
    height, width = image.shape[:2]
    check_budget(height, width, scales)
    sizes = [level_size(height, width, s) for s in scales]
    sums = running_sums(image, [h for h, _ in sizes])
    return [area_level(image, sums, *size) for size in sizes]


def pnet_bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of a pyramid level that PNet sees one request at a time, each at
    most about PNET_BAND_PIXELS. PNet's output row y covers input rows 2y .. 2y + 11, so bands that
    start on even rows, have even heights (all but the last) and overlap by PNET_WINDOW -
    PNET_STRIDE rows give output rows that, stacked, are exactly the whole level's."""
    overlap = PNET_WINDOW - PNET_STRIDE
    rows = max(2 * overlap, PNET_BAND_PIXELS // max(width, 1) // 2 * 2)
    bands = [(0, min(rows, height))]
    while bands[-1][1] < height:
        start = bands[-1][1] - overlap
        bands.append((start, min(start + rows, height)))
    return bands
