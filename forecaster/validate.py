"""Validate: per-series checks on series rows -> the same rows with a reject reason (or null).

Runs inside Ray Data `map_batches`, vectorised over a block of series with numpy. A series is
rejected for the first failing check, in this order (the reason codes are part of the output
contract: they land in `rejects/`):

    null_id               unique_id is null or empty
    non_finite_y          y has NaN, null or +-inf
    overflow_y            |y| exceeds the float32 range the model computes in
    duplicate_ds          the same timestamp twice
    irregular_timestamps  timestamps off the data.freq grid, or gaps in it
    after_run_date        timestamps after run.date
    too_short             fewer than horizon + 2 points (no validation window plus training window),
                          only with model.short_series=reject; by default such series are
                          forecast by a baseline (see predict.py)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.read import DS, ID, Y

REASONS = (
    "null_id",
    "non_finite_y",
    "overflow_y",
    "duplicate_ds",
    "irregular_timestamps",
    "after_run_date",
    "too_short",
)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def min_length(horizon: int) -> int:
    """Shortest usable series: a validation window of `horizon` plus a 2-point training part."""
    return horizon + 2


def validate_batch(batch: pa.Table, freq: str, horizon: int, run_date: str, short_series: str = "reject") -> pa.Table:
    """Add first_ds, last_ds, length, reject_reason, reject_detail; drop the ds lists.

    short_series="baseline" keeps series shorter than `min_length(horizon)` (they get a baseline
    forecast); "reject" rejects them as too_short.
    """
    n = batch.num_rows
    if n == 0:
        return _empty_output(batch)
    lengths = pc.list_value_length(batch[Y]).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    series_of_point = np.repeat(np.arange(n), lengths)
    y = pc.list_flatten(batch[Y]).to_numpy(zero_copy_only=False).astype(np.float64)
    # microseconds throughout (the unit read writes): int64 views of `times`, of the run.date limit
    # and of first/last_ds share one unit, and dates outside the ns range (1677-2262, e.g. a
    # 9999-12-31 sentinel) are checked like any other instead of failing the whole block
    times = pd.DatetimeIndex(pc.list_flatten(batch[DS]).to_numpy(zero_copy_only=False)).as_unit("us")

    ids = batch[ID]
    checks: dict[str, np.ndarray] = {}
    checks["null_id"] = (pc.fill_null(pc.equal(pc.utf8_length(ids), 0), True)).to_numpy(zero_copy_only=False)
    finite = np.isfinite(y)  # nulls arrive as NaN
    checks["non_finite_y"] = _any_per_series(~finite, series_of_point, n)
    checks["overflow_y"] = _any_per_series(finite & (np.abs(y) > FLOAT32_MAX), series_of_point, n)

    same_series_next = np.zeros(len(y), dtype=bool)
    same_series_next[:-1] = series_of_point[:-1] == series_of_point[1:]
    t = times.asi8
    duplicate = np.zeros(len(y), dtype=bool)
    duplicate[:-1] = same_series_next[:-1] & (t[:-1] == t[1:])
    checks["duplicate_ds"] = _any_per_series(duplicate, series_of_point, n)

    offset = pd.tseries.frequencies.to_offset(freq)
    expected_next = (times + offset).asi8
    off_grid = ((times + offset) - offset).asi8 != t
    bad_step = np.zeros(len(y), dtype=bool)
    bad_step[:-1] = same_series_next[:-1] & (expected_next[:-1] != t[1:])
    checks["irregular_timestamps"] = _any_per_series(off_grid | bad_step, series_of_point, n)

    limit = (pd.Timestamp(run_date) + pd.Timedelta(days=1)).as_unit("us")
    checks["after_run_date"] = _any_per_series(t >= limit.asm8.view(np.int64), series_of_point, n)
    checks["too_short"] = lengths < (min_length(horizon) if short_series == "reject" else 1)

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    for code in REASONS:
        hit = checks[code] & (reason == None)  # noqa: E711 (elementwise on an object array)
        for i in np.flatnonzero(hit):
            reason[i] = code
            lo, hi = starts[i], starts[i] + lengths[i]
            detail[i] = _detail(code, times[lo:hi], y[lo:hi], freq, horizon, run_date)

    # every series row holds at least one point (it came from a group of rows)
    first = t[starts].astype("datetime64[us]")
    last = t[starts + lengths - 1].astype("datetime64[us]")
    return pa.table({
        ID: ids,
        Y: batch[Y],
        "first_ds": pa.array(first),
        "last_ds": pa.array(last),
        "length": pa.array(lengths),
        "reject_reason": pa.array(reason, type=pa.string()),
        "reject_detail": pa.array(detail, type=pa.string()),
    })


def _empty_output(batch: pa.Table) -> pa.Table:
    return pa.table({
        ID: batch[ID],
        Y: batch[Y],
        "first_ds": pa.array([], pa.timestamp("us")),
        "last_ds": pa.array([], pa.timestamp("us")),
        "length": pa.array([], pa.int64()),
        "reject_reason": pa.array([], pa.string()),
        "reject_detail": pa.array([], pa.string()),
    })


def _any_per_series(flags: np.ndarray, series_of_point: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(series_of_point[flags], minlength=n) > 0


def _detail(code: str, times: pd.DatetimeIndex, y: np.ndarray, freq: str, horizon: int, run_date: str) -> str:
    """A one-line human explanation for one rejected series (computed for rejects only)."""
    if code == "null_id":
        return "unique_id is null or empty"
    if code == "non_finite_y":
        bad = ~np.isfinite(y)
        return f"{int(bad.sum())} non-finite y value(s), first at {times[np.argmax(bad)]}"
    if code == "overflow_y":
        return f"|y| up to {np.nanmax(np.abs(y)):.3g} exceeds float32 max {FLOAT32_MAX:.3g}"
    if code == "duplicate_ds":
        dup = times[times.duplicated()]
        return f"{len(dup)} duplicated timestamp(s), first {dup[0]}"
    if code == "irregular_timestamps":
        offset = pd.tseries.frequencies.to_offset(freq)
        for prev, cur in zip(times[:-1], times[1:], strict=True):
            if prev + offset != cur:
                return f"after {prev} expected {prev + offset} for data.freq={freq}, got {cur}"
        return f"{times[0]} is not on the data.freq={freq} grid"
    if code == "after_run_date":
        return f"last timestamp {times.max()} is after run.date={run_date}"
    if code == "too_short":
        return f"{len(y)} point(s); at least {min_length(horizon)} needed for model.horizon={horizon}"
    raise KeyError(code)
