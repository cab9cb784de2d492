"""Validate: per-series checks on series rows -> the same rows with a reject reason (or null).

Runs inside Ray Data `map_batches`, vectorised over a block of series with numpy. A series is
rejected for the first failing check, in this order (the reason codes are part of the output
contract: they land in `rejects/`):

    null_id               unique_id is null or empty
    non_finite_y          y has NaN, null or +-inf
    overflow_y            |y| exceeds the float32 range the model computes in
    duplicate_ds          the same timestamp twice
    irregular_timestamps  timestamps off the data.freq grid, or gaps in it
    non_finite_covariate  a past or future covariate (data.*_covariates) has NaN, null or +-inf
    static_not_constant   a static covariate taken from the input changes within the series
    missing_static        a static covariate is null (or a non-finite number)
    after_run_date        timestamps after run.date
    too_short             fewer than horizon + 2 points (no validation window plus training window),
                          only with model.short_series=reject; by default such series are
                          forecast by a baseline (see predict.py)

and, when side tables are configured (`attach_side_tables`, after these checks):

    missing_static             no row, or a null value, in data.static_uri for the series
    missing_future_covariates  data.future_uri lacks a finite value of a covariate for a horizon step
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.columns import (
    DETAIL,
    DS,
    FIRST_DS,
    FUTURE,
    HORIZON,
    ID,
    LAST_DS,
    LENGTH,
    PAST,
    REASON,
    REJECT_DETAIL,
    REJECT_REASON,
    REJECT_SCHEMA,
    STATIC,
    Y,
)
from forecaster.covariates import future_dates

CHECKS = (  # what validate_batch checks, in this order
    "null_id",
    "non_finite_y",
    "overflow_y",
    "duplicate_ds",
    "irregular_timestamps",
    "non_finite_covariate",
    "static_not_constant",
    "missing_static",
    "after_run_date",
    "too_short",
)
REASONS = (*CHECKS, "missing_future_covariates")  # every reason code, attach_side_tables' included
FLOAT32_MAX = float(np.finfo(np.float32).max)


def clean_rows(batch: pa.Table) -> pa.Table:
    """The series of a validated batch that passed, without the reject columns."""
    return batch.filter(pc.is_null(batch[REJECT_REASON])).drop_columns([REJECT_REASON, REJECT_DETAIL])


def reject_rows(batch: pa.Table) -> pa.Table:
    """The rejects-table rows of a validated batch's rejected series."""
    rejected = batch.filter(pc.is_valid(batch[REJECT_REASON]))
    return pa.table({ID: rejected[ID], REASON: rejected[REJECT_REASON], DETAIL: rejected[REJECT_DETAIL]},
                    schema=REJECT_SCHEMA)


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
    covariate_detail: dict[int, str] = {}
    checks["non_finite_covariate"] = _check_covariates(batch, series_of_point, n, covariate_detail)
    static_detail: dict[int, str] = {}
    statics, checks["static_not_constant"] = _reduce_statics(batch, starts, lengths, static_detail)
    checks["missing_static"] = _missing_statics(statics, n)

    limit = (pd.Timestamp(run_date) + pd.Timedelta(days=1)).as_unit("us")
    checks["after_run_date"] = _any_per_series(t >= limit.asm8.view(np.int64), series_of_point, n)
    checks["too_short"] = lengths < (min_length(horizon) if short_series == "reject" else 1)

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    for code in CHECKS:
        hit = checks[code] & (reason == None)  # noqa: E711 (elementwise on an object array)
        for i in np.flatnonzero(hit):
            reason[i] = code
            lo, hi = starts[i], starts[i] + lengths[i]
            if code == "non_finite_covariate":
                detail[i] = covariate_detail[i]
            elif code == "static_not_constant":
                detail[i] = static_detail[i]
            elif code == "missing_static":
                detail[i] = "a static covariate (data.static_covariates) is null or not a finite number"
            else:
                detail[i] = _detail(code, times[lo:hi], y[lo:hi], freq, horizon, run_date)

    # every series row holds at least one point (it came from a group of rows)
    first = t[starts].astype("datetime64[us]")
    last = t[starts + lengths - 1].astype("datetime64[us]")
    return pa.table({
        ID: ids,
        Y: batch[Y],
        **{name: batch[name] for name in batch.column_names if name.startswith((PAST, FUTURE, HORIZON))},
        **statics,
        FIRST_DS: pa.array(first),
        LAST_DS: pa.array(last),
        LENGTH: pa.array(lengths),
        REJECT_REASON: pa.array(reason, type=pa.string()),
        REJECT_DETAIL: pa.array(detail, type=pa.string()),
    })


def _check_covariates(batch: pa.Table, series_of_point: np.ndarray, n: int, detail: dict) -> np.ndarray:
    """Series with a non-finite past/future covariate value; `detail` gets the column and time."""
    bad = np.zeros(n, dtype=bool)
    for name in batch.column_names:
        if not name.startswith((PAST, FUTURE)):
            continue
        values = pc.list_flatten(batch[name]).to_numpy(zero_copy_only=False).astype(np.float64)
        hit = _any_per_series(~np.isfinite(values), series_of_point, n)
        for i in np.flatnonzero(hit & ~bad):
            detail[i] = f"covariate {name.split(':', 1)[1]!r} has non-finite or null values"
        bad |= hit
    return bad


def _missing_statics(statics: dict, n: int) -> np.ndarray:
    missing = np.zeros(n, dtype=bool)
    for column in statics.values():
        missing |= column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_floating(column.type):
            missing |= ~np.isfinite(column.to_numpy(zero_copy_only=False))
    return missing


def _reduce_statics(batch: pa.Table, starts: np.ndarray, lengths: np.ndarray, detail: dict) -> tuple[dict, np.ndarray]:
    """Static covariate lists -> their first value per series; flags series where a value changes."""
    n = len(lengths)
    bad = np.zeros(n, dtype=bool)
    out = {}
    for name in batch.column_names:
        if not name.startswith(STATIC):
            continue
        flat = pc.list_flatten(batch[name])
        first = flat.take(pa.array(starts))
        codes = pc.dictionary_encode(pc.cast(flat, pa.string()), null_encoding="encode")
        codes = (codes.combine_chunks() if isinstance(codes, pa.ChunkedArray) else codes).indices
        code = codes.to_numpy(zero_copy_only=False)
        changes = _any_per_series(code != np.repeat(code[starts], lengths), np.repeat(np.arange(n), lengths), n)
        for i in np.flatnonzero(changes & ~bad):
            detail[i] = f"static covariate {name.split(':', 1)[1]!r} takes several values within the series"
        bad |= changes
        out[name] = first
    return out, bad


def _empty_output(batch: pa.Table) -> pa.Table:
    return pa.table({
        ID: batch[ID],
        Y: batch[Y],
        **{name: batch[name] for name in batch.column_names if name.startswith((PAST, FUTURE, HORIZON))},
        **{name: pa.array([], batch.schema.field(name).type.value_type)
           for name in batch.column_names if name.startswith(STATIC)},
        FIRST_DS: pa.array([], pa.timestamp("us")),
        LAST_DS: pa.array([], pa.timestamp("us")),
        LENGTH: pa.array([], pa.int64()),
        REJECT_REASON: pa.array([], pa.string()),
        REJECT_DETAIL: pa.array([], pa.string()),
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


def attach_side_tables(batch: pa.Table, freq: str, horizon: int, future=None, static=None) -> pa.Table:
    """Join the side tables onto validated series rows (clean ones; rejects pass through).

    `static`: (unique_id, static:<col> ...) one row per series, from data.static_uri -> static:<col>
    columns. `future`: long (unique_id, ds, horizon:<col> ...) from data.future_uri -> one list
    column horizon:<col> per covariate with its values at the `horizon` steps after last_ds.
    Either may be an ObjectRef (Ray's object store holds one copy per node).
    """
    import ray

    future = ray.get(future) if isinstance(future, ray.ObjectRef) else future
    static = ray.get(static) if isinstance(static, ray.ObjectRef) else static
    reason = np.array(batch[REJECT_REASON].to_pylist(), dtype=object)
    detail = np.array(batch[REJECT_DETAIL].to_pylist(), dtype=object)
    columns = {name: batch[name] for name in batch.column_names}
    if static is not None:
        columns.update(_join_static(batch, static, reason, detail))
    if future is not None:
        columns.update(_join_future(batch, future, freq, horizon, reason, detail))
    columns[REJECT_REASON] = pa.array(reason, pa.string())
    columns[REJECT_DETAIL] = pa.array(detail, pa.string())
    return pa.table(columns)


def _join_static(batch: pa.Table, static: pa.Table, reason: np.ndarray, detail: np.ndarray) -> dict:
    rows = pa.table({ID: batch[ID], "_row": pa.array(np.arange(batch.num_rows))})
    joined = rows.join(static, ID, join_type="left outer").sort_by("_row")  # a join does not keep row order
    names = [c for c in static.column_names if c != ID]
    missing = _missing_statics({name: joined[name].combine_chunks() for name in names}, batch.num_rows)
    for i in np.flatnonzero(missing & (reason == None)):  # noqa: E711
        reason[i] = "missing_static"
        detail[i] = "no row or a null value in data.static_uri for this series"
    return {name: joined[name] for name in names}


def _join_future(batch: pa.Table, future: pa.Table, freq: str, horizon: int, reason: np.ndarray,
                 detail: np.ndarray) -> dict:
    n = batch.num_rows
    last = batch[LAST_DS].to_numpy(zero_copy_only=False)
    wanted = pd.DataFrame({
        "_row": np.repeat(np.arange(n), horizon),
        ID: np.repeat(np.asarray(batch[ID].to_pylist(), dtype=object), horizon),
        DS: future_dates(last, horizon, freq).reshape(-1),
    })
    names = [c for c in future.column_names if c not in (ID, DS)]
    ids = pc.is_in(future[ID], value_set=pa.array(wanted[ID].unique().tolist(), pa.string()))
    known = future.filter(ids).to_pandas()
    known[DS] = known[DS].astype(wanted[DS].dtype)
    values = wanted.merge(known, on=[ID, DS], how="left")  # a left merge keeps the order of `wanted`
    steps = values[names].to_numpy(dtype=np.float64).reshape(n, horizon, len(names))
    bad = ~np.isfinite(steps)
    for i in np.flatnonzero(bad.any(axis=(1, 2)) & (reason == None)):  # noqa: E711
        step, column = np.argwhere(bad[i])[0]
        reason[i] = "missing_future_covariates"
        when = pd.Timestamp(values[DS].to_numpy()[i * horizon + step])
        detail[i] = (f"data.future_uri has no finite {names[column].split(':', 1)[1]!r} for {when} "
                     f"(step {step + 1} of model.horizon={horizon})")
    return {name: pa.ListArray.from_arrays(pa.array(np.arange(0, n * horizon + 1, horizon, dtype=np.int32)),
                                           pa.array(steps[..., j].reshape(-1)))
            for j, name in enumerate(names)}
