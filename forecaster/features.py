"""Prepare: windows cut from series and scaled without look-ahead. numpy only; no Ray, no torch.

Vocabulary: a series of `n` points has its last `horizon` points held out for validation; the
points before that are its training part. A window has a cutoff `c`: inputs are the `input_size`
points before `c` (left-padded with a mask where the series is shorter), targets the `horizon`
points from `c` on (right-padded with a mask). Shapes:

    inputs, input_mask:   (windows, input_size)
    targets, target_mask: (windows, horizon)
    loc, scale:           (windows, 1)

Scaling ("window", the default): each window is normalised by robust statistics of its own
observed inputs (median and interquartile range), targets use the same statistics and forecasts
are un-scaled with them. ("series"): statistics of each series' training part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Windows:
    inputs: np.ndarray  # (windows, input_size) scaled, 0 where unobserved
    input_mask: np.ndarray  # (windows, input_size) 1.0 where observed
    targets: np.ndarray  # (windows, horizon) scaled, 0 where unobserved
    target_mask: np.ndarray  # (windows, horizon)
    loc: np.ndarray  # (windows, 1)
    scale: np.ndarray  # (windows, 1)

    def __len__(self) -> int:
        return len(self.inputs)

    def features(self) -> np.ndarray:
        """Model input (windows, input_size, 2): scaled value and observed mask per step."""
        return np.stack([self.inputs, self.input_mask], axis=-1).astype(np.float32)

    def unscale(self, scaled: np.ndarray) -> np.ndarray:
        """(windows, horizon[, outputs]) scaled predictions -> original units."""
        if scaled.ndim == 3:
            return scaled * self.scale[:, :, None] + self.loc[:, :, None]
        return scaled * self.scale + self.loc


class SeriesBlock:
    """A block of series as one flat value array plus offsets (no Python loop per series)."""

    def __init__(self, values: list[np.ndarray] | np.ndarray, offsets: np.ndarray | None = None):
        if offsets is None:
            lengths = np.array([len(v) for v in values], dtype=np.int64)
            self.values = np.concatenate(values).astype(np.float64) if len(values) else np.zeros(0)
        else:
            self.values = np.asarray(values, dtype=np.float64)
            lengths = np.diff(offsets).astype(np.int64)
        self.lengths = lengths
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_arrow(cls, column) -> SeriesBlock:
        """A list<double> column (Array or ChunkedArray) of series values, without copying per series."""
        import pyarrow as pa

        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        offsets = column.offsets.to_numpy()  # a sliced array's offsets need not start at 0
        return cls(column.flatten().to_numpy(zero_copy_only=False), offsets - offsets[0])


def robust_stats(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and IQR of the observed values of each row -> loc, scale of shape (rows, 1).

    Fallbacks when the IQR is zero (flat or tiny windows): mean absolute deviation from the
    median, then |median|, then 1, so that scale is always positive and finite.
    """
    rows, width = values.shape
    masked = np.where(mask > 0, values, np.nan)
    ordered = np.sort(masked, axis=1)  # NaN sorts last
    count = mask.sum(axis=1).astype(np.int64)
    safe = np.maximum(count, 1)

    def quantile(q: float) -> np.ndarray:
        pos = q * (safe - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, safe - 1)
        frac = pos - lo
        r = np.arange(rows)
        return ordered[r, lo] * (1 - frac) + ordered[r, hi] * frac

    median = quantile(0.5)
    iqr = quantile(0.75) - quantile(0.25)
    mad = np.nanmean(np.abs(masked - median[:, None]), axis=1) if width else np.zeros(rows)
    tiny = 1e-8 * np.maximum(np.abs(median), 1.0)
    scale = np.where(iqr > tiny, iqr, np.where(mad > tiny, mad, np.where(np.abs(median) > 0, np.abs(median), 1.0)))
    median = np.where(count > 0, median, 0.0)
    scale = np.where(count > 0, scale, 1.0)
    return median[:, None], scale[:, None]


def _gather(block: SeriesBlock, series: np.ndarray, first: np.ndarray, width: int,
            limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values[first : first + width] of each chosen series, masked outside [0, limit)."""
    idx = first[:, None] + np.arange(width)[None, :]  # position inside the series
    observed = (idx >= 0) & (idx < limit[:, None])
    flat = block.starts[series][:, None] + np.clip(idx, 0, None)
    flat = np.minimum(flat, max(len(block.values) - 1, 0))
    values = np.where(observed, block.values[flat] if len(block.values) else 0.0, 0.0)
    return values, observed.astype(np.float64)


def make_windows(block: SeriesBlock, series: np.ndarray, cutoffs: np.ndarray, input_size: int,
                 horizon: int, limit: np.ndarray, scaler: str = "window",
                 stats_end: np.ndarray | None = None) -> Windows:
    """Windows for the given (series index, cutoff) pairs; values at or after `limit` are hidden.

    `limit` is the number of points of each chosen series that may be seen at all: training uses
    the training part, so later values can never enter inputs, targets or statistics.
    `stats_end` (per chosen series) bounds the points used by the "series" scaler.
    """
    inputs, input_mask = _gather(block, series, cutoffs - input_size, input_size, limit)
    targets, target_mask = _gather(block, series, cutoffs, horizon, limit)
    if scaler == "window":
        loc, scale = robust_stats(inputs, input_mask)
    elif scaler == "series":
        end = limit if stats_end is None else np.minimum(stats_end, limit)
        loc, scale = series_stats(block, series, end)
    else:
        raise ValueError(f"unknown scaler {scaler!r}")
    return Windows(
        inputs=np.where(input_mask > 0, (inputs - loc) / scale, 0.0),
        input_mask=input_mask,
        targets=np.where(target_mask > 0, (targets - loc) / scale, 0.0),
        target_mask=target_mask,
        loc=loc,
        scale=scale,
    )


def series_stats(block: SeriesBlock, series: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust statistics of each chosen series over its points [0, end)."""
    width = int(end.max()) if len(end) else 0
    values, mask = _gather(block, series, np.zeros_like(end), max(width, 1), end)
    return robust_stats(values, mask)


def training_cutoffs(train_lengths: np.ndarray, horizon: int, windows_per_series: int,
                     rng: np.random.Generator, min_inputs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random cutoffs inside each series' training part -> (series index, cutoff) per window.

    A cutoff c leaves at least one observed target and, where the series allows, `min_inputs`
    observed inputs (windows scaled from one or two points teach the network mostly noise);
    where the training part is long enough, targets are complete (c <= n - horizon).
    """
    series = np.repeat(np.arange(len(train_lengths)), windows_per_series)
    n = train_lengths[series]
    high = np.maximum(np.where(n - horizon >= 1, n - horizon, n - 1), 1)  # inclusive upper bound
    low = np.minimum(min_inputs, high)
    cutoffs = low + np.floor(rng.random(len(series)) * (high - low + 1)).astype(np.int64)
    return series, np.minimum(cutoffs, high)


def min_training_inputs(input_size: int, horizon: int) -> int:
    """Fewest observed inputs a training window gets when its series is long enough."""
    return min(input_size, max(2, horizon // 2))


def training_windows(block: SeriesBlock, input_size: int, horizon: int, windows_per_series: int,
                     rng: np.random.Generator, scaler: str = "window") -> Windows:
    """Random windows from the training part (all but the last `horizon` points) of each series."""
    train_lengths = block.lengths - horizon
    series, cutoffs = training_cutoffs(train_lengths, horizon, windows_per_series, rng,
                                       min_training_inputs(input_size, horizon))
    return make_windows(block, series, cutoffs, input_size, horizon, train_lengths[series], scaler)


def validation_windows(block: SeriesBlock, input_size: int, horizon: int, scaler: str = "window") -> Windows:
    """One window per series: the last `horizon` points as targets, the points before as inputs."""
    series = np.arange(len(block))
    cutoffs = block.lengths - horizon
    return make_windows(block, series, cutoffs, input_size, horizon, block.lengths, scaler,
                        stats_end=cutoffs)


def forecast_windows(block: SeriesBlock, input_size: int, horizon: int, scaler: str = "window") -> Windows:
    """One window per series ending at its last point (targets all unobserved)."""
    series = np.arange(len(block))
    return make_windows(block, series, block.lengths, input_size, horizon, block.lengths, scaler,
                        stats_end=block.lengths - horizon)
