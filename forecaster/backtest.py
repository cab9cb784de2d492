"""Backtest: rolling-origin evaluation through the nightly job's own steps.

For window k = 0..K-1 every series loses its last `horizon + (K-1-k)*step` points (a Ray Data step
on the series rows, before validate). The job's validate and train steps run on what is left, with a
Ray Train run of its own per window (never a warm start: earlier weights have seen the hidden
points), and `WindowScorer`, the job's predictor plus scoring, forecasts `horizon` steps from each
cutoff and scores them against the next `horizon` hidden points: the LSTM, the chosen `forecast`,
`no_fallback` (what `forecast` would be with model.fallback=none: the fallback's gain or cost on
this data) and the Naive, SeasonalNaive, Theta, DampedTrend, SES and OptimizedTheta baselines (metrics: evaluate.py).

Output, `<output.uri>/backtests/forecast_date=<run.date>/`, committed like the job's partitions:

    series.parquet    unique_id, window, cutoff, metric, model (what `forecast` used), LSTM, forecast,
                      no_fallback, Naive, SeasonalNaive, Theta, DampedTrend, SES, OptimizedTheta: one row per series,
                      window and metric
    windows.parquet   window, metric, series, <models>: means over the series every model could be
                      scored on (LSTM needs horizon + 2 points before the cutoff; MASE a non-flat history)
    overall.parquet   metric, series, <models>: the same over all windows
    skipped.parquet   unique_id, window, reason, detail: no point before the cutoff (no_history), or
                      a reject reason of validate on the cut series
    summary.json      per window: points hidden, cutoffs, counts, training (with the statistical
                      partner the window's model.statistical=auto chose), intervals (what they were
                      calibrated on: with model.interval_calibration=realised, the errors of the
                      earlier windows' forecasts on the points this window has seen, as a nightly
                      run counts earlier runs': realised(), WindowScorer's ERRORS); overall means;
                      config

and, with report.enabled, the page `<output.uri>/reports/backtests/forecast_date=<run.date>.html`
built from them (report_backtest.py).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from forecaster import intervals
from forecaster.columns import (
    BASELINES,
    CUTOFF,
    FORECAST,
    FUTURE,
    HORIZON,
    ID,
    LAST_DS,
    LENGTH,
    LSTM,
    MODEL,
    NAIVE,
    SEASONAL_NAIVE,
    Y,
)
from forecaster.config import Config, ConfigError
from forecaster.evaluate import coverage, forecast_scores, interval_score, mase_scale, scaled_width
from forecaster.features import SeriesBlock
from forecaster.manifest import versions, window_intervals
from forecaster.pipeline import Timer, check_output_location, predict, split_rejects, train_clean, validate_series
from forecaster.predict import Forecasts, SeriesPredictor, without_fallback
from forecaster.read import check_schema, read_series
from forecaster.report_backtest import backtest_report_location, write_backtest_report
from forecaster.runtime import init_ray
from forecaster.storage import resolve
from forecaster.theta import partner, partner_name, recorded
from forecaster.write import partition, write_files

log = logging.getLogger(__name__)

BACKTESTS = "backtests"
NO_FALLBACK = "no_fallback"  # `forecast` as model.fallback=none would make it: what the fallback gained or cost
MODELS = (LSTM, FORECAST, NO_FALLBACK, *BASELINES)
ACTUAL = "actual"  # the hidden points a window is scored on
SCORE_SCHEMA = pa.schema([(ID, pa.string()), ("window", pa.int64()), (CUTOFF, pa.timestamp("us")),
                          ("metric", pa.string()), (MODEL, pa.string()), *((m, pa.float64()) for m in MODELS)])
# the scaled errors of `forecast` that calibrate the later windows' intervals (WindowScorer.errors); dropped
# from the score rows once collected
ERRORS, ERROR_TYPE = "scaled_errors", pa.list_(pa.float64())
SKIP_SCHEMA = pa.schema([(ID, pa.string()), ("window", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])


def hidden_points(horizon: int, windows: int, step: int, window: int) -> int:
    """Points cut from the end of each series in `window` (the last window hides `horizon`)."""
    return horizon + (windows - 1 - window) * step


def _slice_lists(column: pa.Array | pa.ChunkedArray, begin: np.ndarray, count: np.ndarray) -> pa.Array:
    """Items [begin[i], begin[i] + count[i]) of each list of `column`."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = column.offsets.to_numpy()  # a sliced array's offsets need not start at 0
    new = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    index = np.repeat(offsets[:-1] - offsets[0] + begin - new[:-1], count) + np.arange(new[-1])
    values = column.flatten().take(pa.array(index, pa.int64()))
    if pa.types.is_large_list(column.type):
        return pa.LargeListArray.from_arrays(pa.array(new, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(new, pa.int32()), values)


def _lengths(batch: pa.Table) -> np.ndarray:
    return pc.list_value_length(batch[Y]).to_numpy(zero_copy_only=False).astype(np.int64)


def cut_series(batch: pa.Table, hidden: int, horizon: int | None = None) -> pa.Table:
    """Series rows without their last `hidden` points: `y` and every list column as long as `y` in
    each row (covariates stay aligned) are cut; series with nothing left are dropped (the driver
    lists them as skipped). With `horizon`, each known-future covariate `future:<c>` also gives
    `horizon:<c>`, its first `horizon` hidden values: what data.future_uri holds for a real run."""
    lengths = _lengths(batch)
    keep = lengths > hidden
    batch, lengths = batch.filter(pa.array(keep)), lengths[keep]
    columns = {}
    for name in batch.column_names:
        column = batch[name]
        if (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) and np.array_equal(
                pc.list_value_length(column).to_numpy(zero_copy_only=False), lengths):
            if horizon and name.startswith(FUTURE):
                columns[HORIZON + name[len(FUTURE):]] = _slice_lists(column, lengths - hidden,
                                                                     np.full_like(lengths, horizon))
            column = _slice_lists(column, np.zeros_like(lengths), lengths - hidden)
        columns[name] = column
    return pa.table(columns)


def actual_points(batch: pa.Table, hidden: int, horizon: int) -> pa.Table:
    """unique_id and `actual`, the `horizon` points right after the cutoff, of each series longer than `hidden`."""
    lengths = _lengths(batch)
    keep = lengths > hidden
    batch, lengths = batch.filter(pa.array(keep)), lengths[keep]
    return pa.table({ID: batch[ID], ACTUAL: _slice_lists(batch[Y], lengths - hidden, np.full_like(lengths, horizon))})


class WindowScorer(SeriesPredictor):
    """The job's predictor, scoring its forecasts instead of returning them: one row per series and metric.

    `truth` holds the object refs of the `actual_points` blocks; each actor fetches them once
    (a broadcast join: `horizon` values per series).
    """

    def __init__(self, *, truth: list, window: int, rule: str | None = None, **predictor_args):
        """`rule`: where the later windows' intervals are calibrated on this one's errors, the unit they are
        measured in (model.interval_unit); the rows then carry ERRORS."""
        super().__init__(**predictor_args)
        self.rule = rule
        table = pa.concat_tables(ray.get(truth))
        self.truth_ids = pd.Index(table[ID].to_numpy(zero_copy_only=False))
        self.actual = SeriesBlock.from_arrow(table[ACTUAL]).values.reshape(table.num_rows, -1)
        self.window = window

    def hidden(self, batch: pa.Table) -> tuple[pa.Array, np.ndarray]:
        """(ids, (series, horizon) hidden points) of a batch of series rows."""
        ids = pc.cast(batch[ID], pa.string())
        rows = self.truth_ids.get_indexer(ids.to_numpy(zero_copy_only=False))
        if (rows < 0).any():
            raise RuntimeError(f"backtest: no hidden points for series {ids[int(np.argmin(rows))]}")
        return ids, self.actual[rows]

    def __call__(self, batch: pa.Table) -> pa.Table:
        block = self.block(batch)
        f = self.forecast(batch, block)
        n = len(block)
        ids, actual = self.hidden(batch)
        scale = mase_scale(block, block.lengths, self.season)
        no_fallback = without_fallback(f.lstm[..., 0], partner(f.statistical, self.statistical), f.forecast,
                                       self.weight, f.floor)
        scores = {name: forecast_scores(actual, values, scale) for name, values in (
            (FORECAST, f.forecast), (NO_FALLBACK, no_fallback),
            (NAIVE, f.naive), (SEASONAL_NAIVE, f.seasonal_naive), *f.statistical.items())}
        # the LSTM with all its outputs (the pinball loss scores the interval bounds of loss=quantile)
        scores[LSTM] = forecast_scores(actual, f.lstm, scale, self.spec.quantiles if self.spec else (0.5,))
        for level in f.levels:
            scores[LSTM].update(_interval_scores(actual, f.bound("lo", level), f.bound("hi", level), level, scale))
        for level, (lo, hi) in f.intervals.items():  # the calibrated intervals of `forecast`
            scores[FORECAST].update(_interval_scores(actual, lo, hi, level, scale))
        metrics = list(dict.fromkeys(k for model in (LSTM, FORECAST) for k in scores[model]))
        each = np.repeat(np.arange(n), len(metrics))
        missing = np.full(n, np.nan)
        table = pa.table({
            ID: ids.take(pa.array(each)),
            "window": pa.array(np.full(len(each), self.window)),
            CUTOFF: batch[LAST_DS].take(pa.array(each)),
            "metric": pa.array(np.tile(metrics, n)),
            MODEL: pa.array(f.model[each]),
            **{m: pa.array(np.stack([scores[m].get(k, missing) for k in metrics], axis=1).reshape(-1),
                           from_pandas=True) for m in MODELS},
        }, schema=SCORE_SCHEMA)
        return table if self.rule is None else table.append_column(ERRORS, self.errors(block, f, actual, len(metrics)))

    def errors(self, block: SeriesBlock, f: Forecasts, actual: np.ndarray, per_series: int) -> pa.Array:
        """ERRORS of the batch's score rows (`per_series` rows a series): on the first row of each series the
        network forecast (`model` names the LSTM), |actual - forecast| / unit at each step, in the unit of
        `rule` the predictor drew in, as a nightly run's scores stage counts earlier runs' errors
        (score.error_block); null on every other row."""
        network = np.char.startswith(f.model.astype(str), LSTM)
        unit = intervals.units(mase_scale(block, block.lengths, self.season),
                               intervals.members(f.statistical, f.lstm[..., 0]), self.rule)
        errors = np.abs(actual - f.forecast)[network] / unit[network, None]
        first = np.zeros(len(block) * per_series, dtype=bool)
        first[np.flatnonzero(network) * per_series] = True
        offsets = np.concatenate([[0], np.cumsum(np.where(first, errors.shape[1], 0))]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(errors.reshape(-1)), mask=pa.array(~first))


def realised(cfg: Config, earlier: list[tuple[int, int, np.ndarray]], hidden: int) -> dict | None:
    """The realised-error calibration of a window with `hidden` points hidden (intervals.realised_record):
    the errors of each earlier window (window, its hidden points, the intervals.histogram of its ERRORS)
    at the steps this window sees the actuals of (step s of a window that hid h points: s < h - hidden),
    as a nightly run would have found them; None without earlier windows or with too few errors."""
    if not earlier:
        return None
    counts, used = np.zeros_like(earlier[0][2]), []
    for window, hid, histogram in earlier:
        seen = max(min(hid - hidden, len(histogram)), 0)
        if seen and histogram[:seen].any():
            counts[:seen] += histogram[:seen]
            used.append(f"window {window}")
    return intervals.realised_record(counts, cfg.model.levels, cfg.model.interval_unit, used)


def _interval_scores(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: int, scale: np.ndarray) -> dict:
    """A `level` % interval's metrics per series: coverage_, width_ and msis_<level> (the interval score,
    forecaster.evaluate.interval_score; width and msis in units of the MASE scale)."""
    return {f"coverage_{level}": coverage(actual, lo, hi), f"width_{level}": scaled_width(lo, hi, scale),
            f"msis_{level}": interval_score(actual, lo, hi, level, scale)}


def _collect(ds: ray.data.Dataset, schema: pa.Schema) -> pa.Table:
    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()


def _window(cfg: Config, series: ray.data.Dataset, lengths: pd.Series, window: int, hidden: int,
            token: str, calibration: dict | None = None,
            errors: bool = False) -> tuple[dict, pa.Table, pa.Table, np.ndarray | None]:
    """Cut, validate, train, predict and score one window: (report, score rows, skipped rows, the
    intervals.histogram of its ERRORS where `errors` asks for them, for the later windows). `calibration`:
    the realised errors of the earlier windows the intervals are drawn from (realised())."""
    window_cfg = copy.deepcopy(cfg)
    window_cfg.run.name = f"{cfg.run.name}-backtest-{token}-w{window}"  # a fresh Ray Train run: never resumes another
    window_cfg.train.warm_start = "none"  # an earlier run's weights have seen the hidden points
    window_cfg.data.future_uri = None  # known-future values of the window come from the hidden history
    cut = series.map_batches(cut_series, fn_kwargs={"hidden": hidden, "horizon": cfg.model.horizon},
                             batch_format="pyarrow", batch_size=None)
    clean, rejects, counts = split_rejects(validate_series(window_cfg, cut))
    checkpoint, checkpoint_uri, training = train_clean(window_cfg, clean, counts)
    scores, histogram = SCORE_SCHEMA.empty_table(), None
    if counts["forecast"] > 0:
        truth = series.map_batches(actual_points, fn_kwargs={"hidden": hidden, "horizon": cfg.model.horizon},
                                   batch_format="pyarrow", batch_size=None).materialize()
        rule = cfg.model.interval_unit if errors else None
        scores = _collect(predict(window_cfg, clean, checkpoint, WindowScorer, truth=truth.to_arrow_refs(),
                                  window=window, realised=calibration, rule=rule),
                          SCORE_SCHEMA if rule is None else SCORE_SCHEMA.append(pa.field(ERRORS, ERROR_TYPE)))
        if rule is not None:
            found = scores[ERRORS].drop_null().combine_chunks()  # one list per series the network forecast
            histogram = intervals.histogram(found.flatten().to_numpy(zero_copy_only=False).reshape(
                len(found), cfg.model.horizon))
            scores = scores.drop_columns([ERRORS])
    # Naive forecasts a finite value for every clean series: its MAE is undefined (null) only where a
    # hidden point is NaN or inf
    naive_undefined = pc.invert(pc.fill_null(pc.is_finite(scores[NAIVE]), False))
    no_actual = scores.filter(pc.and_(pc.equal(scores["metric"], "mae"), naive_undefined))[ID].combine_chunks()
    scores = scores.filter(pc.invert(pc.is_in(scores[ID], value_set=no_actual)))
    short = lengths[lengths <= hidden]
    skipped = pa.concat_tables([
        _skip_rows(short.index, window, "no_history", [f"{n} point(s), {hidden} hidden" for n in short]),
        _skip_rows(no_actual, window, "non_finite_actual", ["a hidden point is NaN or inf"] * len(no_actual)),
        _collect(rejects, SKIP_SCHEMA.remove(1)).add_column(1, "window", pa.array(np.full(counts["rejected"], window))),
    ]).cast(SKIP_SCHEMA)
    first = scores.filter(pc.equal(scores["metric"], "mae"))  # one row per scored series
    counts.update(series=len(lengths), no_history=len(short), non_finite_actual=len(no_actual),
                  scored=first.num_rows, lstm_scored=int(pc.sum(pc.is_finite(first[LSTM])).as_py() or 0),
                  by_model=dict(Counter(first[MODEL].to_pylist())))
    cutoffs = [str(pc.min(first[CUTOFF]).as_py()), str(pc.max(first[CUTOFF]).as_py())] if len(first) else []
    log.info("window %d: %d points hidden, %d series scored, %d skipped", window, hidden, counts["scored"],
             skipped.num_rows)
    return ({"window": window, "hidden": hidden, "cutoffs": cutoffs, "counts": counts, "training": training,
             "checkpoint_uri": checkpoint_uri,
             "intervals": {"calibration": cfg.model.interval_calibration, "realised": calibration}},
            scores, skipped, histogram)


def _skip_rows(ids, window: int, reason: str, details: list[str]) -> pa.Table:
    return pa.table({ID: pa.array(list(ids), pa.string()), "window": pa.array(np.full(len(details), window)),
                     "reason": pa.array([reason] * len(details), pa.string()),
                     "detail": pa.array(details, pa.string())})


def aggregate(scores: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean of each model's metric over the series where every model that has the metric is defined
    (so models are compared on the same series); `series` counts them."""
    rows = []
    for key, group in scores.groupby([*by, "metric"], sort=False):
        models = [m for m in MODELS if group[m].notna().any()]
        used = group.dropna(subset=models)
        rows.append({**dict(zip([*by, "metric"], key, strict=True)), "series": len(used),
                     **{m: used[m].mean() if m in models else np.nan for m in MODELS}})
    return pd.DataFrame(rows, columns=[*by, "metric", "series", *MODELS])


def _means(frame: pd.DataFrame) -> dict:
    """{metric: {series, model: mean}} with None for undefined means (JSON has no NaN)."""
    frame = frame.set_index("metric")[["series", *MODELS]].astype(object)
    return frame.where(frame.notna(), None).to_dict("index")


def backtest(cfg: Config, windows: int, step: int | None = None) -> dict:
    """Run `windows` rolling-origin windows `step` points apart; returns the summary that was written."""
    step = cfg.model.horizon if step is None else step
    if windows < 1 or step < 1:
        raise ConfigError(f"backtest --windows={windows} --step={step}: both must be positive integers")
    check_output_location(cfg)
    timer = Timer()
    root = resolve(cfg.output.uri, cfg.data.storage_options)
    checked = check_schema(cfg)  # file-level errors stop before Ray starts
    init_ray(cfg)
    series = read_series(cfg, checked)  # materialised: every window cuts the same rows
    table = _collect(series.map_batches(lambda b: pa.table({ID: b[ID], LENGTH: _lengths(b)}),
                                        batch_format="pyarrow", batch_size=None),
                     pa.schema([(ID, pa.string()), (LENGTH, pa.int64())]))
    lengths = pd.Series(table[LENGTH].to_numpy(), index=table[ID].to_pylist())
    timer.mark("read")
    token = uuid.uuid4().hex[:8]
    reports, scores, skipped, earlier = [], [], [], []  # earlier: the windows whose errors calibrate later ones
    for k in range(windows):
        hidden = hidden_points(cfg.model.horizon, windows, step, k)
        report, window_scores, window_skipped, histogram = _window(
            cfg, series, lengths, k, hidden, token, realised(cfg, earlier, hidden),
            errors=cfg.realised_intervals and k < windows - 1)
        if histogram is not None:
            earlier.append((k, hidden, histogram))
        reports.append(report)
        scores.append(window_scores)
        skipped.append(window_skipped)
        timer.mark(f"window_{k}")

    per_series = pa.concat_tables(scores)
    frame = per_series.to_pandas()
    per_window, overall = aggregate(frame, ["window"]), aggregate(frame, [])
    for report in reports:
        report["metrics"] = _means(per_window[per_window.window == report["window"]])
    out = partition(root, BACKTESTS, cfg.forecast_date)
    page = backtest_report_location(root, cfg.forecast_date) if cfg.report.enabled else None
    summary = {"windows": windows, "step": step, "horizon": cfg.model.horizon, "season": cfg.season,
               "per_window": reports, "overall": _means(overall), "output": out.uri, "config": cfg.to_dict(),
               "versions": versions(), "timings_s": {k: round(v, 3) for k, v in timer.total().items()},
               "report": None if page is None else page.uri}
    write_files(root, BACKTESTS, cfg.forecast_date, {
        "series": per_series, "windows": pa.Table.from_pandas(per_window, preserve_index=False),
        "overall": pa.Table.from_pandas(overall, preserve_index=False), "skipped": pa.concat_tables(skipped),
    }, {"summary": summary})
    if page is not None:
        write_backtest_report(cfg)  # read back from what was just committed, as `forecaster report --backtest` does
    return summary


def _intervals_note(record: dict | None) -> str:
    """A window line's note on its intervals where the earlier windows' errors calibrated them (realised())."""
    source = window_intervals(record)
    return f"; intervals on {source}" if source else ""


def summary_lines(summary: dict) -> list[str]:
    """What the CLI prints: counts per window, then every metric per window and over all windows."""
    lines = [f"backtest: {summary['windows']} window(s), horizon {summary['horizon']}, step {summary['step']}"]
    for r in summary["per_window"]:
        c = r["counts"]
        reasons = "".join(f", {k}={v}" for k, v in c["reject_reasons"].items())
        cutoffs = " .. ".join(dict.fromkeys(s[:10] for s in r["cutoffs"])) or "-"
        chosen = recorded((r.get("training") or {}).get("statistical"))  # each window's own partner
        partner = f"; partner {partner_name(chosen)}" if chosen else ""
        lines.append(f"window {r['window']}: {r['hidden']} points hidden, cutoffs {cutoffs}; {c['scored']} of "
                     f"{c['series']} series scored (LSTM on {c['lstm_scored']}); skipped: {c['no_history']} without "
                     f"history, {c['non_finite_actual']} with NaN/inf hidden points, {c['rejected']} rejected{reasons}"
                     f"{_intervals_note(r.get('intervals'))}{partner}")
    lines.append(f"{'metric':<12}{'window':>7}{'series':>8}" + "".join(f"{m:>15}" for m in MODELS))
    tables = [(r["window"], r["metrics"]) for r in summary["per_window"]] + [("all", summary["overall"])]
    for metric in summary["overall"]:
        for window, means in tables:
            row = means.get(metric, {})
            values = "".join(f"{'-' if row.get(m) is None else format(row[m], '.4f'):>15}" for m in MODELS)
            lines.append(f"{metric:<12}{window:>7}{row.get('series', 0):>8}{values}")
    lines.append(f"output: {summary['output']}")
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    return lines
