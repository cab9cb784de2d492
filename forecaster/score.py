"""Score: earlier forecasts under output.uri against the actuals that have arrived since.

Every run reads each series' history up to run.date, so it can tell how the forecasts of earlier
runs turned out. The newest `score.max_origins` earlier dates of `forecasts/` that may have a step
observed now (the partition's earliest `ds`, from the Parquet footers, is not after the newest point
of today's input) are scored, one origin at a time, inside Ray Data: each read task takes one
forecast file (only the columns scored) and joins it with today's series rows, whose blocks it
fetches from the object store (a broadcast join; the driver never holds the forecasts). With
model.interval_calibration=realised, the errors of earlier `forecast`s calibrate today's intervals
(realised_errors): from the newest date of each first `ds` (cutoff), up to `score.max_origins` of
them, found past the dates scored where several dates forecast from one cutoff (find_origins).

Rows of `scores/forecast_date=<run.date>/`, one per (series, origin, model column):

    unique_id, origin_date   the series and the forecast_date of the forecast scored
    model                    the output column scored: forecast, LSTM, Naive, SeasonalNaive, Theta, ...
    status                   scored, or why the series has no score at that origin (then model is null):
                             absent (not in today's input), rejected (today's timestamps cannot be
                             placed: null_id, duplicate_ds, irregular_timestamps), pending (no step
                             due yet), no_actuals (every step due has a NaN actual)
    points                   steps with a finite actual (and a forecast of that model)
    nan_points               steps due whose actual is NaN or null (not scored)
    mae, mase, smape         over those points; mase is scaled by the series' in-sample seasonal-naive
                             MAE up to the origin's cutoff (forecaster.evaluate.mase_scale), NaN where
                             that is 0; smape is the M4 definition (forecaster.evaluate.smape)
    coverage-<level>         share of those points inside the model's <model>-lo/hi-<level> interval
                             (NaN for a model without one)
"""

from __future__ import annotations

import itertools
import logging
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from forecaster import intervals
from forecaster.columns import CUTOFF, DS, FORECAST, ID, INTERVAL, LSTM, MODEL, Y, interval, partition_date
from forecaster.config import Config
from forecaster.evaluate import mase_scale, smape_terms
from forecaster.features import SeriesBlock
from forecaster.manifest import score_line
from forecaster.storage import Location, retry
from forecaster.write import FORECASTS, SCORES, committed_paths, write_partition

log = logging.getLogger(__name__)

SCORED, ABSENT, REJECTED, PENDING, NO_ACTUALS = "scored", "absent", "rejected", "pending", "no_actuals"
STATUSES = (SCORED, ABSENT, REJECTED, PENDING, NO_ACTUALS)
# reject reasons after which today's points cannot be placed on the calendar
UNPLACEABLE = ("null_id", "duplicate_ds", "irregular_timestamps")
# forecast columns that are not a model's values
NOT_MODELS = (ID, DS, CUTOFF, MODEL)
READ_AHEAD = 16  # earlier dates whose footers are read at once, in threads, while looking for origins


@dataclass(frozen=True)
class Origin:
    """An earlier forecast partition to score: its date, committed files, model columns and levels."""

    date: str
    paths: list[str]
    columns: list[str]  # the columns scoring reads
    models: list[str]
    levels: list[str]
    first_ds: np.datetime64  # the earliest `ds` forecast (Parquet statistics)


def score_schema(levels: list[str]) -> pa.Schema:
    return pa.schema([(ID, pa.string()), ("origin_date", pa.string()), ("model", pa.string()),
                      ("status", pa.string()), ("points", pa.int64()), ("nan_points", pa.int64()),
                      ("mae", pa.float64()), ("mase", pa.float64()), ("smape", pa.float64()),
                      *[(f"coverage-{level}", pa.float64()) for level in levels]])


def _columns(schema: pa.Schema) -> tuple[list[str], dict[str, list[str]]]:
    """(model columns, {model: its interval levels}) of a forecasts schema."""
    bounds: dict[str, set] = defaultdict(set)
    models = []
    for field in schema:
        match = INTERVAL.match(field.name)
        if match:
            bounds[match["model"]].add(match["level"])
        elif field.name not in NOT_MODELS and pa.types.is_floating(field.type):
            models.append(field.name)
    intervals = {m: sorted(levels, key=float) for m, levels in bounds.items()
                 if m in models and all(interval(m, s, lv) in schema.names for lv in levels for s in ("lo", "hi"))}
    return models, intervals


def _footer(fs: pafs.FileSystem, path: str) -> tuple[np.datetime64 | None, pa.Schema]:
    """(the earliest `ds` of a forecast file from its row-group statistics, None for no rows; its schema),
    from one read of its footer."""
    metadata = retry(lambda: pq.ParquetFile(fs.open_input_file(path)).metadata, path, "read the footer")
    schema = metadata.schema.to_arrow_schema()
    column = schema.get_field_index("ds")
    found = None
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        if group.num_rows == 0:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max:  # no statistics: read the column
            table = retry(lambda: pq.read_table(path, columns=["ds"], filesystem=fs), path, "read ds")
            value = pc.min(table["ds"]).as_py()
        else:
            value = stats.min
        value = np.datetime64(value, "us")
        found = value if found is None else min(found, value)
    return found, schema


def earlier_dates(root: Location, run_date: str) -> list[str]:
    """Dates of forecast partitions under `root` before `run_date`, newest first."""
    table = root.join(FORECASTS)
    selector = pafs.FileSelector(table.path, allow_not_found=True)
    dates = []
    for info in retry(lambda: table.fs.get_file_info(selector), table.uri, "list"):
        name = posixpath.basename(info.path.rstrip("/"))
        date = partition_date(name)
        if info.type == pafs.FileType.Directory and date is not None:
            if date < run_date:
                dates.append(date)
    return sorted(set(dates), reverse=True)


def _origin(root: Location, date: str, newest_actual: np.datetime64) -> Origin | None:
    """The forecast partition of `date` as an Origin; None where it is empty or has no step that may be
    observed by `newest_actual` (its earliest `ds` is later)."""
    paths = committed_paths(root, FORECASTS, date)
    footers = [_footer(root.fs, p) for p in paths]
    earliest = [d for d, _ in footers if d is not None]
    if not earliest or min(earliest) > newest_actual:
        return None
    models, intervals = _columns(footers[0][1])
    bounds = [f"{m}-{s}-{lv}" for m, levels in intervals.items() for lv in levels for s in ("lo", "hi")]
    levels = sorted({lv for v in intervals.values() for lv in v}, key=float)
    return Origin(date, paths, [ID, "ds", "cutoff", *models, *bounds], models, levels, min(earliest))


def _due(root: Location, run_date: str, newest_actual: np.datetime64) -> Iterator[Origin]:
    """The earlier forecast partitions with a step that may be observed now, newest first, lazily: their
    footers are read READ_AHEAD dates at a time, in threads (on an object store each is a request)."""
    dates = earlier_dates(root, run_date)
    with ThreadPoolExecutor(READ_AHEAD) as pool:
        for start in range(0, len(dates), READ_AHEAD):
            chunk = dates[start:start + READ_AHEAD]
            yield from (o for o in pool.map(lambda d: _origin(root, d, newest_actual), chunk) if o is not None)


def find_origins(root: Location, run_date: str, newest_actual: np.datetime64, max_origins: int,
                 calibrate: tuple[str, int] | None = None) -> tuple[list[Origin], list[Origin]]:
    """(scored, calibrating): the newest `max_origins` earlier forecast partitions with a step that may be
    observed now, which the scores table scores; and, given `calibrate` (freq, horizon), the origins
    realised_errors counts: those of the scored that calibrating() keeps (one per first `ds`), then,
    where runs repeated a first `ds` (nightly runs over monthly series put 30 dates on one cutoff),
    the newest date of each earlier cutoff, until `max_origins` of them or one whose every step is due
    (its first `ds` at least horizon - 1 periods before the newest actual): the later steps' errors need
    cutoffs that far back, and none further is needed."""
    due = _due(root, run_date, newest_actual)
    scored = list(itertools.islice(due, max_origins))
    kept: list[Origin] = []
    if calibrate is not None:
        freq, horizon = calibrate

        covered = False  # a kept origin has every step due
        for origin in calibrating(itertools.chain(scored, due)):
            if len(kept) == max_origins or (covered and origin.date < scored[-1].date):
                break
            kept.append(origin)
            last = pd.date_range(pd.Timestamp(origin.first_ds), periods=horizon, freq=freq)[-1]
            covered = covered or last <= newest_actual
    due.close()
    return scored, kept


class _Series:
    """Today's series rows (the validated blocks, fetched from the object store) looked up by id."""

    def __init__(self, blocks: list):
        tables = [t for t in (ray.get(b) if isinstance(b, ray.ObjectRef) else b for b in blocks) if t.num_rows]
        self.table = pa.concat_tables(tables) if tables else None
        self.ids = None if self.table is None else self.table[ID].combine_chunks()

    def rows(self, ids: pa.Array) -> np.ndarray:
        """Row of each id in today's series, -1 where it is absent."""
        if self.table is None:
            return np.full(len(ids), -1)
        found = pc.index_in(ids, value_set=self.ids)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _ordinals(grid: pd.DatetimeIndex, when: np.ndarray) -> np.ndarray:
    """Position of each date on `grid` (-1 where it is not a grid date)."""
    ticks = grid.as_unit("us").asi8
    when = when.astype("datetime64[us]").view(np.int64)
    position = np.searchsorted(ticks, when)
    inside = position < len(ticks)
    exact = np.zeros(len(when), dtype=bool)
    exact[inside] = ticks[position[inside]] == when[inside]
    return np.where(exact, position, -1)


@dataclass
class Joined:
    """One origin's forecast rows (a Ray Data block) joined with today's series: per series of the block
    (`ids`, in order of first appearance) its status and MASE scale up to the origin's cutoff, per row
    its series (`codes`), its step after the cutoff and today's actual at its `ds`."""

    ids: pa.Array  # (series,) the block's series ids
    codes: np.ndarray  # (rows,) each row's series
    status: np.ndarray  # (series,) STATUSES
    scale: np.ndarray  # (series,) evaluate.mase_scale up to the cutoff; NaN where not SCORED
    step: np.ndarray  # (rows,) 0 for the first step after the cutoff; -1 where it cannot be placed
    actual: np.ndarray  # (rows,) today's value at `ds`; NaN where none
    observed: np.ndarray  # (rows,) due (within today's series) with a finite actual
    nan_points: np.ndarray  # (series,) steps due whose actual is NaN


def join(batch: pa.Table, series: list, freq: str, season: int) -> Joined:
    """Forecast rows of one origin (a Ray Data block, not empty) joined with today's series rows
    (`series`: the validated blocks, as object refs or tables): see Joined."""
    encoded = pc.dictionary_encode(pc.cast(batch[ID], pa.string())).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)  # series of each forecast row
    ids = encoded.dictionary
    n = len(ids)
    today = _Series(series)
    where = today.rows(ids)
    status = np.full(n, SCORED, dtype=object)
    status[where < 0] = ABSENT
    present = np.flatnonzero(where >= 0)
    now = today.table.take(pa.array(where[present])) if len(present) else None
    if now is not None:
        reasons = now["reject_reason"].to_numpy(zero_copy_only=False)
        status[present[np.isin(reasons, UNPLACEABLE)]] = REJECTED
    usable = status == SCORED
    slot = np.full(n, -1)  # row of each usable series in `block`
    slot[usable] = np.arange(usable.sum())
    keep = usable[present]
    block = SeriesBlock.from_arrow(now[Y].filter(pa.array(keep))) if keep.any() else SeriesBlock([])

    # each forecast row's step on today's calendar of its series: position = steps after first_ds
    ds = batch[DS].to_numpy(zero_copy_only=False).astype("datetime64[us]")
    row_slot = slot[codes]
    rows = np.flatnonzero(row_slot >= 0)
    due = np.zeros(len(ds), dtype=bool)
    actual = np.full(len(ds), np.nan)
    step = np.full(len(ds), -1)
    ends = np.zeros(len(block), dtype=np.int64)  # points up to and including each series' cutoff
    if len(rows):
        first = now["first_ds"].to_numpy(zero_copy_only=False)[keep].astype("datetime64[us]")
        cutoff = batch[CUTOFF].to_numpy(zero_copy_only=False)[rows].astype("datetime64[us]")
        dates = np.concatenate([first, ds[rows], cutoff])
        grid = pd.date_range(dates.min(), dates.max(), freq=pd.tseries.frequencies.to_offset(freq))
        start = _ordinals(grid, first)[row_slot[rows]]
        at = _ordinals(grid, ds[rows])
        position = np.where(at >= 0, at - start, -1)
        placed = _ordinals(grid, cutoff)
        ends[row_slot[rows]] = np.maximum(placed - start + 1, 0)
        step[rows] = np.where((at >= 0) & (placed >= 0), at - placed - 1, -1)
        inside = (position >= 0) & (position < block.lengths[row_slot[rows]])
        due[rows[inside]] = True
        actual[rows[inside]] = block.values[block.starts[row_slot[rows[inside]]] + position[inside]]
    observed = due & np.isfinite(actual)

    due_count = np.bincount(codes[due], minlength=n)
    nan_points = np.bincount(codes[due & ~observed], minlength=n)
    status[usable & (due_count == 0)] = PENDING
    status[usable & (due_count > 0) & (nan_points == due_count)] = NO_ACTUALS
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.full(n, np.nan)
        scale[usable] = mase_scale(block, np.minimum(ends, block.lengths), season)
    return Joined(ids, codes, status, scale, step, actual, observed, nan_points)


def score_block(batch: pa.Table, *, series: list, origin: str, models: list[str], levels: list[str],
                freq: str, season: int) -> pa.Table:
    """Forecast rows of one origin (a Ray Data block) -> score rows (see the module docstring).

    `series`: today's validated series blocks, as object refs (or tables)."""
    schema = score_schema(levels)
    if batch.num_rows == 0:
        return schema.empty_table()
    joined = join(batch, series, freq, season)
    ids, codes, status, scale = joined.ids, joined.codes, joined.status, joined.scale
    actual, observed, nan_points = joined.actual, joined.observed, joined.nan_points
    n = len(ids)

    out: dict[str, list] = defaultdict(list)
    scored = np.flatnonzero(status == SCORED)
    for model in models:
        forecast = batch[model].to_numpy(zero_copy_only=False).astype(np.float64)
        valid = observed & np.isfinite(forecast)
        points = np.bincount(codes[valid], minlength=n)
        chosen = scored[points[scored] > 0]
        if not len(chosen):
            continue
        error = np.abs(actual[valid] - forecast[valid])
        mae = np.bincount(codes[valid], weights=error, minlength=n)[chosen] / points[chosen]
        sape = np.bincount(codes[valid], weights=smape_terms(actual[valid], forecast[valid]), minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            mase = np.where(scale[chosen] > 0, mae / scale[chosen], np.nan)
        out["series"].append(chosen)
        out["model"].append(np.full(len(chosen), model, dtype=object))
        out["points"].append(points[chosen])
        out["mae"].append(mae)
        out["mase"].append(mase)
        out["smape"].append(100 * sape[chosen] / points[chosen])
        for level in levels:
            name = f"coverage-{level}"
            lo_name, hi_name = f"{model}-lo-{level}", f"{model}-hi-{level}"
            if lo_name in batch.column_names and hi_name in batch.column_names:
                lo = batch[lo_name].to_numpy(zero_copy_only=False).astype(np.float64)
                hi = batch[hi_name].to_numpy(zero_copy_only=False).astype(np.float64)
                inside = ((actual >= lo) & (actual <= hi))[valid].astype(np.float64)
                out[name].append(np.bincount(codes[valid], weights=inside, minlength=n)[chosen] / points[chosen])
            else:
                out[name].append(np.full(len(chosen), np.nan))
    unscored = np.flatnonzero(status != SCORED)
    missing = np.full(len(unscored), np.nan)
    out["series"].append(unscored)
    out["model"].append(np.full(len(unscored), None, dtype=object))
    out["points"].append(np.zeros(len(unscored), dtype=np.int64))
    for name in ("mae", "mase", "smape", *[f"coverage-{level}" for level in levels]):
        out[name].append(missing)
    which = np.concatenate(out.pop("series")).astype(np.int64)
    columns = {name: np.concatenate(parts) for name, parts in out.items()}
    return pa.table({
        ID: ids.take(pa.array(which)),
        "origin_date": pa.array(np.full(len(which), origin)),
        "model": pa.array(columns["model"], pa.string()),
        "status": pa.array(status[which], pa.string()),
        "points": pa.array(columns["points"], pa.int64()),
        "nan_points": pa.array(nan_points[which], pa.int64()),
        **{name: pa.array(columns[name], pa.float64(), from_pandas=True)
           for name in ("mae", "mase", "smape", *[f"coverage-{level}" for level in levels])},
    }, schema=schema)


# what realised_errors reads of an origin: `forecast`, the model that made it, and the forecasts whose spread
# makes the interval unit (intervals.members)
ERROR_COLUMNS = (ID, DS, CUTOFF, MODEL, FORECAST, LSTM, *intervals.SPREAD_METHODS)


def error_block(batch: pa.Table, *, series: list, origin: str, freq: str, season: int, horizon: int,
                rule: str) -> pa.Table:
    """Forecast rows of one origin (a Ray Data block, ERROR_COLUMNS) -> the intervals.error_histogram of
    its `forecast` at the steps observed now, over the series the network forecast (`model` names the
    LSTM: the others are calibrated by length, intervals.short_histograms), each in the unit of `rule`
    made as the predictor made it at the origin: the MASE scale up to the cutoff and the spread of the
    origin's own forecasts (intervals.units). One row per step 0 .. horizon - 1 (steps the origin did
    not forecast count no error): origin (its date), step, counts (intervals.BINS)."""
    counts = np.zeros((horizon, intervals.BINS))
    if batch.num_rows:
        joined = join(batch, series, freq, season)
        network = pc.fill_null(pc.starts_with(batch[MODEL], LSTM), False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(network & (joined.step >= 0) & (joined.status[joined.codes] == SCORED))
        if len(rows):
            # every step the origin forecast: its spread is over all of them, as the predictor's was
            width = max(int(joined.step[rows].max()) + 1, horizon)
            series_of, step = joined.codes[rows], joined.step[rows]

            def grid(values: np.ndarray) -> np.ndarray:  # (series, width), NaN where the origin has no row
                out = np.full((len(joined.ids), width), np.nan)
                out[series_of, step] = values[rows]
                return out

            def column(name: str) -> np.ndarray:
                return grid(batch[name].to_numpy(zero_copy_only=False).astype(np.float64))

            methods = {name: column(name) for name in intervals.SPREAD_METHODS}
            unit = intervals.units(joined.scale, intervals.members(methods, column(LSTM)), rule)
            actual = grid(np.where(joined.observed, joined.actual, np.nan))
            counts = intervals.error_histogram(actual[:, :horizon], column(FORECAST)[:, :horizon], unit)
    return pa.table({"origin": pa.array([origin] * horizon, pa.string()),
                     "step": pa.array(np.arange(horizon), pa.int64()),
                     "counts": pa.array(list(counts), pa.list_(pa.float64()))})


def calibrating(origins: Iterable[Origin]) -> Iterator[Origin]:
    """The origins (newest first) whose errors realised_errors counts: not one whose table lacks a column
    of ERROR_COLUMNS (written before the spread's methods were: its unit could not be made), nor one
    that forecast from the same first `ds` as a newer origin (a run that saw the same data: nightly
    runs over monthly series), whose errors would count twice."""
    seen = set()
    for origin in origins:
        if set(ERROR_COLUMNS) <= {*origin.models, ID, DS, CUTOFF, MODEL} and origin.first_ds not in seen:
            seen.add(origin.first_ds)
            yield origin


def _union(parts: list[ray.data.Dataset]) -> ray.data.Dataset | None:
    """One dataset of the origins' parts (None for none): one pass over them all."""
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0] if parts else None


def realised_errors(root: Location, origins: list[Origin], series: list, freq: str, season: int, horizon: int,
                    rule: str) -> tuple[np.ndarray, list[str]]:
    """The summed error_block histograms (horizon, intervals.BINS) of `origins` (find_origins' calibrating
    ones), in one Ray Data pass over them all like score_origins' (each block reaches the driver as one
    row per step), and the dates of the origins with an error in them, newest first."""
    found = {origin.date: np.zeros((horizon, intervals.BINS)) for origin in origins}
    rows = _union([ray.data.read_parquet(origin.paths, filesystem=root.fs, columns=list(ERROR_COLUMNS),
                                         partitioning=None, override_num_blocks=len(origin.paths)).map_batches(
        error_block, batch_format="pyarrow", batch_size=None,
        fn_kwargs={"series": series, "origin": origin.date, "freq": freq, "season": season, "horizon": horizon,
                   "rule": rule}) for origin in origins])
    for batch in [] if rows is None else rows.iter_batches(batch_format="pyarrow", batch_size=None):
        for origin, step, counts in zip(batch["origin"].to_pylist(), batch["step"].to_pylist(),
                                        batch["counts"].to_numpy(zero_copy_only=False), strict=True):
            found[origin][step] += counts
    used = [date for date, counts in found.items() if counts.any()]
    return sum((found[date] for date in used), np.zeros((horizon, intervals.BINS))), used


def score_origins(root: Location, origins: list[Origin], series: list, freq: str,
                  season: int) -> tuple[ray.data.Dataset | None, pa.Schema]:
    """Score rows of every origin (lazy; executes when written) and their schema.

    `series`: object refs of today's validated series blocks (`Dataset.to_arrow_refs()`).
    """
    levels = sorted({level for o in origins for level in o.levels}, key=float)
    schema = score_schema(levels)
    parts = []
    for origin in origins:
        rows = ray.data.read_parquet(origin.paths, filesystem=root.fs, columns=origin.columns, partitioning=None,
                                     override_num_blocks=len(origin.paths))
        parts.append(rows.map_batches(
            score_block, batch_format="pyarrow", batch_size=None,
            fn_kwargs={"series": series, "origin": origin.date, "models": origin.models, "levels": levels,
                       "freq": freq, "season": season}))
    return _union(parts), schema


def summarise(paths: list[str], fs: pafs.FileSystem) -> list[dict]:
    """Per origin (newest first): series by status, NaN points, the most steps scored, and per model the
    mean MASE, sMAPE and MAE over series (where defined), points, series and coverage (over points).

    Reads the committed score files in batches, only the columns it sums: bounded memory."""
    sums: dict = {}
    dataset = pads.dataset(paths, filesystem=fs, format="parquet")
    coverage = [n for n in dataset.schema.names if n.startswith("coverage-")]
    columns = ["origin_date", "model", "status", "points", "nan_points", "mae", "mase", "smape", *coverage]
    for batch in dataset.to_batches(columns=columns):
        frame = batch.to_pandas()
        for origin, rows in frame.groupby("origin_date"):
            entry = sums.setdefault(origin, {"series": dict.fromkeys(STATUSES, 0), "nan_points": 0, "steps": 0,
                                             "models": {}})
            first = rows[rows["status"] != SCORED]
            for status, count in first["status"].value_counts().items():
                entry["series"][status] += int(count)
            scored = rows[rows["status"] == SCORED]
            entry["nan_points"] += int(first["nan_points"].sum())
            if len(scored):
                entry["steps"] = max(entry["steps"], int(scored["points"].max()))
            for model, part in scored.groupby("model"):
                acc = entry["models"].setdefault(model, defaultdict(float))
                acc["series"] += len(part)
                acc["points"] += float(part["points"].sum())
                for metric in ("mae", "mase", "smape"):
                    finite = part[metric][np.isfinite(part[metric])]
                    acc[f"{metric}_sum"] += float(finite.sum())
                    acc[f"{metric}_n"] += len(finite)
                for name in coverage:
                    defined = part[np.isfinite(part[name])]
                    acc[f"{name}_sum"] += float((defined[name] * defined["points"]).sum())
                    acc[f"{name}_n"] += float(defined["points"].sum())
                if model == "forecast":  # one row per scored series: its NaN points counted once
                    entry["nan_points"] += int(part["nan_points"].sum())
                    entry["series"][SCORED] += len(part)
    summary = []
    for origin in sorted(sums, reverse=True):
        entry = sums[origin]
        models = {}
        for model, acc in sorted(entry["models"].items()):
            means = {"series": int(acc["series"]), "points": int(acc["points"])}
            for metric in ("mae", "mase", "smape", *coverage):
                n = acc[f"{metric}_n"]
                if metric in coverage and n == 0:
                    continue
                means[metric] = acc[f"{metric}_sum"] / n if n else None
            models[model] = means
        summary.append({"origin_date": origin, "steps": entry["steps"], "series": entry["series"],
                        "nan_points": entry["nan_points"], "models": models})
    return summary


def _block_newest(batch: pa.Table) -> pa.Table:
    return pa.table({"newest": pa.array([pc.max(batch["last_ds"]).as_py()], pa.timestamp("us"))})


def newest_point(validated: ray.data.Dataset) -> np.datetime64 | None:
    """The latest last_ds of today's series (one value per block reaches the driver)."""
    newest = validated.map_batches(_block_newest, batch_format="pyarrow", batch_size=None).take_all()
    found = [row["newest"] for row in newest if row["newest"] is not None]
    return np.datetime64(max(found), "us") if found else None


class Earlier(NamedTuple):
    """What score_earlier learnt from the earlier forecasts."""

    scores: dict | None  # the manifest's `scores`: the table's URI and summarise()'s origins; None: not enabled
    realised: dict | None  # intervals.realised_record of their errors; None: too few, or calibration=validation


def score_earlier(cfg: Config, root: Location, validated: ray.data.Dataset) -> Earlier:
    """Score the earlier forecasts under output.uri against today's validated series and commit
    `scores/forecast_date=<run.date>/` (empty where nothing is due yet); with
    model.interval_calibration=realised, calibrate the intervals on the errors of find_origins'
    calibrating origins. Nothing with score.enabled=false."""
    if not cfg.score.enabled:
        return Earlier(None, None)
    newest = newest_point(validated)
    realised = cfg.realised_intervals
    origins, calibration = ([], []) if newest is None else find_origins(
        root, cfg.forecast_date, newest, cfg.score.max_origins,
        (cfg.data.freq, cfg.model.horizon) if realised else None)
    series = validated.to_arrow_refs()
    rows, schema = score_origins(root, origins, series, cfg.data.freq, cfg.season)
    if rows is None:
        rows = ray.data.from_arrow(schema.empty_table())
    loc = write_partition(root, SCORES, cfg.forecast_date, rows, schema)
    summary = summarise(committed_paths(root, SCORES, cfg.forecast_date), root.fs)
    if summary:  # the newest; nightly runs score 30 dates, the manifest and the report hold them all
        older = len(summary) - 1
        log.info("%s%s", score_line(summary[0]), f"; and {older} older date(s) in {loc.uri}" if older else "")
    record = None
    if realised:
        counts, used = realised_errors(root, calibration, series, cfg.data.freq, cfg.season, cfg.model.horizon,
                                       cfg.model.interval_unit)
        record = intervals.realised_record(counts, cfg.model.levels, cfg.model.interval_unit, used)
    return Earlier({"uri": loc.uri, "origins": summary}, record)
