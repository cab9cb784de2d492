"""Prepare: windows cut from series and scaled without look-ahead. numpy only; no Ray, no torch.

Vocabulary: a series of `n` points has its last `horizon` points held out for validation; the
points before that are its training part. A window has a cutoff `c`: inputs are the `input_size`
points before `c` (left-padded with a mask where the series is shorter), targets the `horizon`
points from `c` on (right-padded with a mask). Shapes:

    inputs, input_mask:   (windows, input_size)
    targets, target_mask: (windows, horizon)
    loc, scale:           (windows, 1)

    steps:                (windows, input_size, spec.step_features) covariates at input steps
    ahead:                (windows, horizon, spec.horizon_features) known-ahead covariates
    static_num, static_cat: (windows, numeric statics), (windows, categorical statics)

Scaling (model.scaler="window", the default): each window is normalised by statistics of its own
observed inputs (model.scaler_type: robust = median and interquartile range, standard = mean and
standard deviation, minmax, none); targets use the same statistics and forecasts are un-scaled
with them. ("series"): statistics of each series' training part. Numeric past and future
covariates are scaled the same way by statistics of their own input-window values, so no value
after the cutoff shapes the scaling; calendar features are bounded sin/cos pairs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from forecaster.columns import FUTURE, HORIZON, PAST, STATIC
from forecaster.covariates import FeatureSpec, calendar_anchor, calendar_features, static_buckets, static_numeric
from forecaster.spec import ModelSpec


@dataclass
class Windows:
    inputs: np.ndarray  # (windows, input_size) scaled, 0 where unobserved
    input_mask: np.ndarray  # (windows, input_size) 1.0 where observed
    targets: np.ndarray  # (windows, horizon) scaled, 0 where unobserved
    target_mask: np.ndarray  # (windows, horizon)
    loc: np.ndarray  # (windows, 1)
    scale: np.ndarray  # (windows, 1)
    steps: np.ndarray | None = None  # (windows, input_size, step features)
    ahead: np.ndarray | None = None  # (windows, horizon, horizon features)
    static_num: np.ndarray | None = None  # (windows, numeric statics)
    static_cat: np.ndarray | None = None  # (windows, categorical statics) hash buckets
    weight: np.ndarray | None = None  # (windows,) of each window's errors in the loss (train.loss_weight)

    def __len__(self) -> int:
        return len(self.inputs)

    def features(self, rows=slice(None)) -> np.ndarray:
        """Model input (windows, input_size, 2 + step features): scaled value, observed mask, covariates."""
        parts = [self.inputs[rows][..., None], self.input_mask[rows][..., None]]
        if self.steps is not None:
            parts.append(self.steps[rows])
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def model_inputs(self, rows=slice(None)) -> dict[str, np.ndarray]:
        """Keyword arguments of LSTMForecaster.forward (as numpy) for windows `rows`."""
        out = {"x": self.features(rows)}
        if self.ahead is not None and self.ahead.shape[-1]:
            out["future"] = self.ahead[rows].astype(np.float32)
        if self.static_num is not None and self.static_num.shape[-1]:
            out["static_num"] = self.static_num[rows].astype(np.float32)
        if self.static_cat is not None and self.static_cat.shape[-1]:
            out["static_cat"] = self.static_cat[rows].astype(np.int64)
        return out

    def unscale(self, scaled: np.ndarray) -> np.ndarray:
        """(windows, horizon[, outputs]) scaled predictions -> original units."""
        if scaled.ndim == 3:
            return scaled * self.scale[:, :, None] + self.loc[:, :, None]
        return scaled * self.scale + self.loc


class SeriesBlock:
    """A block of series as one flat value array plus offsets (no Python loop per series).

    Covariates, when a FeatureSpec asks for them: `covariates` (points, past + future) aligned with
    `values`; `horizon_values` (series, horizon, future) the future covariates after each series'
    end (prediction only); `anchor`/`step` place every point in time for calendar features;
    `static_num`/`static_cat` one row per series.
    """

    def __init__(self, values: list[np.ndarray] | np.ndarray, offsets: np.ndarray | None = None,
                 spec: FeatureSpec | None = None, covariates: np.ndarray | None = None,
                 horizon_values: np.ndarray | None = None, anchor: np.ndarray | None = None, step: int = 1,
                 static_num: np.ndarray | None = None, static_cat: np.ndarray | None = None):
        if offsets is None:
            lengths = np.array([len(v) for v in values], dtype=np.int64)
            self.values = np.concatenate(values).astype(np.float64) if len(values) else np.zeros(0)
        else:
            self.values = np.asarray(values, dtype=np.float64)
            lengths = np.diff(offsets).astype(np.int64)
        self.lengths = lengths
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.spec = spec or FeatureSpec()
        n = len(lengths)
        self.covariates = covariates if covariates is not None else np.zeros((len(self.values), 0))
        self.horizon_values = horizon_values
        self.anchor = anchor if anchor is not None else np.zeros(n, dtype=np.int64)
        self.step = step
        self.static_num = static_num if static_num is not None else np.zeros((n, 0))
        self.static_cat = static_cat if static_cat is not None else np.zeros((n, 0), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(series index, position inside its series) of every point of `values`."""
        series = np.repeat(np.arange(len(self)), self.lengths)
        return series, np.arange(len(self.values)) - self.starts[series]

    def never_negative(self, ends: np.ndarray) -> np.ndarray:
        """(series,) True where no point of [0, ends[i]) is below zero."""
        series, position = self.points()
        negative = (self.values < 0) & (position < ends[series])
        return np.bincount(series[negative], minlength=len(self)) == 0

    @classmethod
    def from_batch(cls, batch, spec: FeatureSpec | None = None) -> SeriesBlock:
        """A block from series rows (pyarrow): `y`, plus the covariate columns `spec` names."""
        block = cls.from_arrow(batch["y"])
        spec = spec or FeatureSpec()
        block.spec = spec
        columns = [PAST + c for c in spec.past] + [FUTURE + c for c in spec.future]
        if columns:
            block.covariates = np.stack([_flat(batch[c]) for c in columns], axis=-1)
        if spec.future and HORIZON + spec.future[0] in batch.column_names:
            block.horizon_values = np.stack(
                [_flat(batch[HORIZON + c]).reshape(len(block), -1) for c in spec.future], axis=-1)
        if spec.calendar is not None:
            first = batch["first_ds"].to_numpy(zero_copy_only=False)
            block.anchor, block.step = calendar_anchor(first, spec.calendar, spec.freq)
        if spec.static_numeric:
            block.static_num = np.stack([static_numeric(batch[STATIC + c]) for c in spec.static_numeric], axis=-1)
        if spec.static_categorical:
            block.static_cat = np.stack([static_buckets(batch[STATIC + c], c, spec.static_buckets)
                                         for c in spec.static_categorical], axis=-1)
        return block

    def take(self, keep: np.ndarray) -> SeriesBlock:
        """The chosen series (a boolean mask) as a block of their own."""
        if keep.all():
            return self
        points = np.repeat(keep, self.lengths)
        return SeriesBlock(
            self.values[points], np.concatenate([[0], np.cumsum(self.lengths[keep])]), self.spec,
            self.covariates[points], None if self.horizon_values is None else self.horizon_values[keep],
            self.anchor[keep], self.step, self.static_num[keep], self.static_cat[keep])

    def tails(self, series: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> SeriesBlock:
        """The `lengths[i]` points before `ends[i]` of each chosen series (indices `series`;
        lengths[i] <= ends[i]), as a block of their own: values only, as the statistical methods read them."""
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        first = self.starts[series] + ends - lengths  # flat index of each tail's first point
        flat = np.repeat(first - offsets[:-1], lengths) + np.arange(offsets[-1])
        return SeriesBlock(self.values[flat], offsets)

    @classmethod
    def from_arrow(cls, column) -> SeriesBlock:
        """A list<double> column (Array or ChunkedArray) of series values, without copying per series."""
        import pyarrow as pa

        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        offsets = column.offsets.to_numpy()  # a sliced array's offsets need not start at 0
        return cls(column.flatten().to_numpy(zero_copy_only=False), offsets - offsets[0])


def _flat(column) -> np.ndarray:
    """The values of a list<double> column (Array or ChunkedArray), flattened, as float64."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)


NAIVE_UNIT_FLOOR = 0.1  # in scaled units (a standard-scaled window has std 1): weights stay at most 10


def naive_unit(windows: Windows, season: int) -> np.ndarray:
    """(windows,) each input window's mean absolute seasonal difference (lag `season`, or lag 1 where the
    window holds no observed pair that far apart) in its scaled units, at least NAIVE_UNIT_FLOOR: the
    window's MASE scale, as train.loss_weight=mase divides its errors by. 1 without any observed pair."""
    x, observed = windows.inputs, windows.input_mask
    out = np.full(len(x), np.nan)
    for lag in dict.fromkeys((season, 1)):
        if x.shape[1] <= lag:
            continue
        pairs = observed[:, lag:] * observed[:, :-lag]
        count = pairs.sum(axis=1)
        mean = (np.abs(x[:, lag:] - x[:, :-lag]) * pairs).sum(axis=1) / np.maximum(count, 1)
        out = np.where(np.isnan(out) & (count > 0), mean, out)
    return np.maximum(np.nan_to_num(out, nan=1.0), NAIVE_UNIT_FLOOR)


def window_stats(values: np.ndarray, mask: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """loc, scale (rows, 1) of the observed values of each row for model.scaler_type `kind`.

    Fallbacks when the scale is zero (flat or tiny windows): mean absolute deviation from loc,
    then |loc|, then 1, so that scale is always positive and finite. Only robust sorts (once).
    """
    rows, width = values.shape
    count = mask.sum(axis=1).astype(np.int64)
    if kind == "none":
        return np.zeros((rows, 1)), np.ones((rows, 1))
    masked = np.where(mask > 0, values, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (no observed value) are handled below
        if kind == "robust":
            loc, q1, q3 = _quantiles(masked, count, (0.5, 0.25, 0.75))
            scale = q3 - q1
        elif kind == "standard":
            loc = np.nanmean(masked, axis=1)
            scale = np.nanstd(masked, axis=1)
        elif kind == "minmax":
            loc = np.nanmin(masked, axis=1)
            scale = np.nanmax(masked, axis=1) - loc
        else:
            raise ValueError(f"unknown scaler type {kind!r}")
        mad = np.nanmean(np.abs(masked - loc[:, None]), axis=1) if width else np.zeros(rows)
    tiny = 1e-8 * np.maximum(np.abs(loc), 1.0)
    scale = np.where(scale > tiny, scale, np.where(mad > tiny, mad, np.where(np.abs(loc) > 0, np.abs(loc), 1.0)))
    loc = np.where(count > 0, loc, 0.0)
    scale = np.where((count > 0) & np.isfinite(scale), scale, 1.0)
    return loc[:, None], scale[:, None]


def _quantiles(masked: np.ndarray, count: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Linear-interpolated quantiles of the non-NaN values of each row (NaN sorts last)."""
    ordered = np.sort(masked, axis=1)
    safe = np.maximum(count, 1)
    r = np.arange(len(masked))
    out = []
    for q in qs:
        pos = q * (safe - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, safe - 1)
        frac = pos - lo
        out.append(ordered[r, lo] * (1 - frac) + ordered[r, hi] * frac if masked.shape[1] else np.zeros(len(r)))
    return out


def _positions(block: SeriesBlock, series: np.ndarray, first: np.ndarray, width: int,
               limit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions first .. first + width - 1 of each chosen series: (position, flat index, observed)."""
    idx = first[:, None] + np.arange(width)[None, :]  # position inside the series
    observed = (idx >= 0) & (idx < limit[:, None])
    flat = block.starts[series][:, None] + np.clip(idx, 0, None)
    flat = np.minimum(flat, max(len(block.values) - 1, 0))
    return idx, flat, observed


def take_points(block: SeriesBlock, series: np.ndarray, first: np.ndarray, width: int,
                limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values[first : first + width] of each chosen series, masked outside [0, limit)."""
    _, flat, observed = _positions(block, series, first, width, limit)
    values = np.where(observed, block.values[flat] if len(block.values) else 0.0, 0.0)
    return values, observed.astype(np.float64)


def make_windows(block: SeriesBlock, series: np.ndarray, cutoffs: np.ndarray, limit: np.ndarray, spec: ModelSpec,
                 stats_end: np.ndarray | None = None) -> Windows:
    """Windows of `spec` (input_size, horizon, scaler, scaler_type) for the given (series index, cutoff)
    pairs; values at or after `limit` are hidden.

    `limit` is the number of points of each chosen series that may be seen at all: training uses
    the training part, so later values can never enter inputs, targets or statistics.
    `stats_end` (per chosen series) bounds the points used by the "series" scaler.
    """
    input_size, horizon, scaler, scaler_type = spec.input_size, spec.horizon, spec.scaler, spec.scaler_type
    inputs, input_mask = take_points(block, series, cutoffs - input_size, input_size, limit)
    targets, target_mask = take_points(block, series, cutoffs, horizon, limit)
    if scaler == "window":
        loc, scale = window_stats(inputs, input_mask, scaler_type)
    elif scaler == "series":
        end = limit if stats_end is None else np.minimum(stats_end, limit)
        loc, scale = series_stats(block, series, end, scaler_type)
    else:
        raise ValueError(f"unknown scaler {scaler!r}")
    windows = Windows(
        inputs=np.where(input_mask > 0, (inputs - loc) / scale, 0.0),
        input_mask=input_mask,
        targets=np.where(target_mask > 0, (targets - loc) / scale, 0.0),
        target_mask=target_mask,
        loc=loc,
        scale=scale,
    )
    if block.spec.step_features or block.static_num.shape[1] or block.static_cat.shape[1]:
        _add_covariates(windows, block, series, cutoffs, input_size, horizon, limit, scaler_type)
    return windows


def _add_covariates(windows: Windows, block: SeriesBlock, series: np.ndarray, cutoffs: np.ndarray,
                    input_size: int, horizon: int, limit: np.ndarray, scaler_type: str) -> None:
    """Covariates of each window: numeric ones over the input window (and, for known-future ones,
    the horizon), scaled by statistics of their input-window values; calendar at every step."""
    spec = block.spec
    n_past = len(spec.past)
    _, flat_in, seen_in = _positions(block, series, cutoffs - input_size, input_size, limit)
    pos_out, flat_out, seen_out = _positions(block, series, cutoffs, horizon, block.lengths[series])
    cov = block.covariates
    steps = np.where(seen_in[..., None], cov[flat_in] if len(cov) else 0.0, 0.0)  # (W, T, C)
    ahead = np.where(seen_out[..., None], cov[flat_out][..., n_past:] if len(cov) else 0.0, 0.0)  # (W, H, F)
    if block.horizon_values is not None and spec.future:  # after the series' end: data.future_uri
        beyond = pos_out - block.lengths[series][:, None]
        known = (beyond >= 0) & (beyond < block.horizon_values.shape[1])
        from_future = block.horizon_values[series[:, None], np.clip(beyond, 0, block.horizon_values.shape[1] - 1)]
        ahead = np.where(known[..., None], from_future, ahead)
        seen_out = seen_out | known
    if steps.shape[-1]:
        rows, width, columns = steps.shape
        flat_steps = steps.transpose(0, 2, 1).reshape(rows * columns, width)
        loc, scale = window_stats(flat_steps, np.repeat(seen_in, columns, axis=0), scaler_type)
        loc, scale = loc.reshape(rows, 1, columns), scale.reshape(rows, 1, columns)
        steps = np.where(seen_in[..., None], (steps - loc) / scale, 0.0)
        ahead = np.where(seen_out[..., None], (ahead - loc[..., n_past:]) / scale[..., n_past:], 0.0)
    if spec.calendar is not None:
        start = block.anchor[series][:, None] + (cutoffs[:, None] - input_size + np.arange(input_size)) * block.step
        end = block.anchor[series][:, None] + (cutoffs[:, None] + np.arange(horizon)) * block.step
        steps = np.concatenate([steps, calendar_features(start, spec.calendar)], axis=-1)
        ahead = np.concatenate([ahead, calendar_features(end, spec.calendar)], axis=-1)
    windows.steps, windows.ahead = steps, ahead
    windows.static_num, windows.static_cat = block.static_num[series], block.static_cat[series]


def series_stats(block: SeriesBlock, series: np.ndarray, end: np.ndarray,
                 scaler_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of each chosen series over its points [0, end)."""
    width = int(end.max()) if len(end) else 0
    values, mask = take_points(block, series, np.zeros_like(end), max(width, 1), end)
    return window_stats(values, mask, scaler_type)


def windows_of_each(series: int, windows_per_series: float, rng: np.random.Generator) -> np.ndarray | int:
    """How many windows each of `series` series gets: `windows_per_series` itself when whole, else its
    whole part plus one with probability of its fraction (the expected total is series x the rate)."""
    if float(windows_per_series).is_integer():
        return int(windows_per_series)
    whole = int(windows_per_series)
    return whole + (rng.random(series) < windows_per_series - whole).astype(np.int64)


def training_cutoffs(train_lengths: np.ndarray, horizon: int, windows_per_series: int | np.ndarray,
                     rng: np.random.Generator, min_inputs: int = 1,
                     recent: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random cutoffs inside each series' training part -> (series index, cutoff) per window.

    A cutoff c leaves at least one observed target and, where the series allows, `min_inputs`
    observed inputs (windows scaled from one or two points teach the network mostly noise);
    where the training part is long enough, targets are complete (c <= n - horizon). `recent`
    (train.recent_horizons in points): only cutoffs at most `recent` points before the latest are drawn.
    """
    series = np.repeat(np.arange(len(train_lengths)), windows_per_series)
    n = train_lengths[series]
    high = np.maximum(np.where(n - horizon >= 1, n - horizon, n - 1), 1)  # inclusive upper bound
    low = np.minimum(min_inputs, high)
    if recent is not None:
        low = np.maximum(low, high - recent)
    cutoffs = low + np.floor(rng.random(len(series)) * (high - low + 1)).astype(np.int64)
    return series, np.minimum(cutoffs, high)


def min_training_inputs(input_size: int, horizon: int) -> int:
    """Fewest observed inputs a training window gets when its series is long enough."""
    return min(input_size, max(2, horizon // 2))


def training_windows(block: SeriesBlock, spec: ModelSpec, counts: int | np.ndarray, rng: np.random.Generator,
                     whole: bool = False, recent: int | None = None) -> Windows:
    """`counts` random windows from the training part (all but the last `horizon` points) of each series
    (one count for all, or one per series: windows_of_each draws them for a fractional rate), or with
    `whole` from the whole series (train.refit_epochs: the validation window has been used); `recent`:
    cutoffs at most `recent` points before each series' latest (training_cutoffs)."""
    train_lengths = block.lengths - (0 if whole else spec.horizon)
    series, cutoffs = training_cutoffs(train_lengths, spec.horizon, counts, rng,
                                       min_training_inputs(spec.input_size, spec.horizon), recent)
    return make_windows(block, series, cutoffs, train_lengths[series], spec)


def validation_windows(block: SeriesBlock, spec: ModelSpec) -> Windows:
    """One window per series: the last `horizon` points as targets, the points before as inputs."""
    series = np.arange(len(block))
    cutoffs = block.lengths - spec.horizon
    return make_windows(block, series, cutoffs, block.lengths, spec, stats_end=cutoffs)


def forecast_windows(block: SeriesBlock, spec: ModelSpec) -> Windows:
    """One window per series ending at its last point (targets all unobserved)."""
    series = np.arange(len(block))
    return make_windows(block, series, block.lengths, block.lengths, spec, stats_end=block.lengths - spec.horizon)
