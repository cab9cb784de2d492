"""Accuracy on M1 (monthly, quarterly, yearly): the job's default config against baselines.

    .venv/bin/python bench/accuracy.py [--data ../shared/data/m1] [--only monthly] [--set key=value ...] [--dev]

Trains on each train.parquet through the normal job (`forecaster run` contract), then scores against
test.parquet (with --dev: against the last horizon points of each training series, the job training
on the points before them, so that choices are made without the test sets): MASE (seasonal lag from
the frequency, scale from the training part) and sMAPE, averaged over series. Rows: `forecast` (what
the job recommends: by default the mean of the LSTM and its statistical partner, the mean of Theta
and DampedTrend or of Theta and SES as model.statistical=auto chose per data set; with --set
model.fallback=validation, seasonal naive where that won the series' validation window), `LSTM` (the
network alone), `no_fallback` (the combination as training weighed it, never the fallback: the same
as `forecast` under the defaults), `Theta`, `DampedTrend` and `SES` (the job's own statistical
baselines), seasonal naive, and, when statsforecast is installed (`pip install -e '.[bench]'`),
AutoETS and AutoTheta. Each dataset's line `partner` says which partner the run used. The intervals
of `forecast` are scored over every series and, where there are any (--dev cuts some short), over
the series too short for the network alone.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecaster.backtest import NO_FALLBACK  # noqa: E402
from forecaster.columns import FORECAST, LSTM, STATISTICAL_METHODS  # noqa: E402
from forecaster.config import load_config, season_length  # noqa: E402
from forecaster.evaluate import (  # noqa: E402
    coverage,
    interval_score,
    mase,
    mase_scale,
    scaled_width,
    seasonal_naive,
    smape,
)
from forecaster.features import SeriesBlock  # noqa: E402
from forecaster.manifest import interval_line, statistical_used  # noqa: E402
from forecaster.pipeline import run  # noqa: E402
from forecaster.predict import without_fallback  # noqa: E402
from forecaster.theta import floor_series, partner  # noqa: E402

DATASETS = {"monthly": ("MS", 18), "quarterly": ("QS", 8), "yearly": ("YS", 6)}


class Truth:
    """The test set's actuals as (series, horizon) arrays, scored with the job's own metrics
    (forecaster.evaluate): MASE scaled by each training part's seasonal-naive MAE, sMAPE."""

    def __init__(self, train: pd.DataFrame, test: pd.DataFrame, freq: str):
        self.season = season_length(freq)
        test = test.sort_values(["unique_id", "ds"])
        self.ids = test.unique_id.unique()
        history = dict(tuple(train.sort_values("ds").groupby("unique_id").y))
        self.block = SeriesBlock([history[uid].to_numpy(dtype=float) for uid in self.ids])
        self.keys = test[["unique_id", "ds"]].reset_index(drop=True)
        self.horizon = len(test) // len(self.ids)
        if self.horizon * len(self.ids) != len(test):
            raise ValueError("test.parquet: every series needs the same number of future points")
        self.actual = test.y.to_numpy(dtype=float).reshape(len(self.ids), self.horizon)
        self.scale = mase_scale(self.block, self.block.lengths, self.season)

    def values(self, forecast: pd.DataFrame, column: str) -> np.ndarray:
        """(series, horizon) of one forecast column, aligned with the actuals (NaN where it has none)."""
        merged = self.keys.merge(forecast[["unique_id", "ds", column]], on=["unique_id", "ds"], how="left")
        return merged[column].to_numpy(dtype=float).reshape(self.actual.shape)

    def score(self, forecast: pd.DataFrame, column: str) -> dict:
        predicted = self.values(forecast, column)
        # MASE is undefined on flat histories; a column may lack series (LSTM: those too short for the network)
        defined = np.isfinite(predicted).all(axis=1)
        scaled = mase(self.actual, predicted, self.scale)[(self.scale > 0) & defined]
        return {"MASE": float(np.mean(scaled)), "sMAPE": float(np.mean(smape(self.actual, predicted)[defined])),
                "series": int(defined.sum())}

    def coverage(self, forecast: pd.DataFrame, level: int, series: np.ndarray | None = None) -> dict:
        """Share of test points inside `forecast`'s `level` % interval, its mean width in units of the
        series' MASE scale (forecaster.evaluate, as the backtest reports them) and its mean scaled
        interval score (MSIS, forecaster.evaluate.interval_score: width and misses in one number), over
        every series or those `series` (a mask over self.ids) marks."""
        lower, upper = (self.values(forecast, f"forecast-{side}-{level}") for side in ("lo", "hi"))
        rows = slice(None) if series is None else series
        actual, lower, upper, scale = self.actual[rows], lower[rows], upper[rows], self.scale[rows]
        inside = coverage(actual, lower, upper)
        return {"coverage": float(np.nanmean(inside)), "width": float(np.nanmean(scaled_width(lower, upper, scale))),
                "msis": float(np.nanmean(interval_score(actual, lower, upper, level, scale))),
                "series": int(np.isfinite(inside).sum())}

    def without_network(self, forecast: pd.DataFrame) -> np.ndarray:
        """(series,) True where the job forecast the series without the network (too short for it: no
        `LSTM` value), whose intervals are calibrated apart (forecaster.intervals)."""
        return ~np.isfinite(self.values(forecast, LSTM)).all(axis=1)

    def seasonal_naive(self) -> pd.DataFrame:
        values = seasonal_naive(self.block, self.block.lengths, self.horizon, self.season)
        return self.keys.assign(SeasonalNaive=values.reshape(-1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "m1"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "work" / "accuracy"))
    parser.add_argument("--only", nargs="*", default=list(DATASETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--dev", action="store_true",
                        help="score on the last horizon points of each training series instead of test.parquet "
                             "(the job trains on the points before them): for choosing, never touching the test sets")
    parser.add_argument("--origin", type=int, default=1,
                        help="with --dev: score on the origin-th last horizon of each training series, the points "
                             "after it dropped (2: the horizon before the last; a rolling-origin check)")
    parser.add_argument("--history", type=int, default=0,
                        help="first run the job at each of the N horizons before the scored cutoff, oldest first, "
                             "into the same output.uri, as N earlier nightly runs would have: the scored run's "
                             "scores stage then finds their forecasts (model.interval_calibration=realised "
                             "calibrates its intervals on their realised errors)")
    args = parser.parse_args()
    table = []
    for name in args.only:
        freq, horizon = DATASETS[name]
        train_path = pathlib.Path(args.data) / name / "train.parquet"
        train = pd.read_parquet(train_path).sort_values(["unique_id", "ds"])
        out = pathlib.Path(args.out) / name
        if args.dev:
            train, test = held_out(train, horizon, args.origin)
            train_path = out.parent / f"{name}-dev-train.parquet"
            train_path.parent.mkdir(parents=True, exist_ok=True)
            train.to_parquet(train_path, index=False)
        else:
            test = pd.read_parquet(pathlib.Path(args.data) / name / "test.parquet")
        truth = Truth(train, test, freq)
        shutil.rmtree(out, ignore_errors=True)  # no earlier run's forecasts but --history's under output.uri
        for back in range(args.history, 0, -1):
            earlier = train[train.groupby("unique_id").cumcount(ascending=False) >= back * horizon]
            earlier_path = out.parent / f"{name}-history-{back}.parquet"
            earlier_path.parent.mkdir(parents=True, exist_ok=True)
            earlier.to_parquet(earlier_path, index=False)
            run(_config(earlier_path, earlier, freq, horizon, out, f"{name}-history-{back}", args.overrides))
        cfg = _config(train_path, train, freq, horizon, out, name, args.overrides)
        started = time.perf_counter()
        manifest = run(cfg)
        seconds = time.perf_counter() - started
        forecast = pd.read_parquet(out / "forecasts" / f"forecast_date={cfg.forecast_date}")
        # the combination without the validation fallback (model.fallback=none), from the same run
        weight = manifest["metrics"].get("combine_weight") or 0.5  # the LSTM's in forecast
        floor = floor_series(truth.block, truth.block.lengths, cfg.model.nonnegative)  # per series, as forecast
        if floor is not None:  # ... and per forecast row
            floor = forecast["unique_id"].map(pd.Series(floor, index=truth.ids)).to_numpy(dtype=bool)
        used = statistical_used(manifest)  # model.statistical, as auto resolved it
        forecast[NO_FALLBACK] = without_fallback(forecast[LSTM].to_numpy(), partner(forecast, used).to_numpy(),
                                                 forecast[FORECAST].to_numpy(), weight, floor)
        columns = (FORECAST, LSTM, NO_FALLBACK, *STATISTICAL_METHODS)
        rows = {column: truth.score(forecast, column) for column in columns}
        rows["SeasonalNaive"] = truth.score(truth.seasonal_naive(), "SeasonalNaive")
        rows.update(statistical(truth, train, freq, horizon))
        short = truth.without_network(forecast)
        covered = {level: {**truth.coverage(forecast, level),
                           "short": truth.coverage(forecast, level, short) if short.any() else None}
                   for level in cfg.model.levels}
        train_minutes = manifest["timings_s"]["train"] / 60
        table.append((name, rows, manifest["counts"], seconds, train_minutes, manifest["metrics"].get("epochs"),
                      covered))
        print(f"{name}: partner {used} (model.statistical={cfg.model.statistical})", flush=True)
        print(f"{name}: {interval_line(manifest['intervals'])}", flush=True)
    print()
    print("train-min: the minutes of the job's training stage (Ray Train's start included), next to its MASE; "
          "series: how many the row scores (LSTM: those long enough for the network)")
    print(f"{'dataset':10} {'model':14} {'MASE':>7} {'sMAPE':>7} {'series':>6}   rejected epochs seconds train-min")
    for name, rows, counts, seconds, train_minutes, epochs, _ in table:
        for model, result in rows.items():
            extra = (f"   {counts['rejected']:8d} {epochs!s:>6} {seconds:7.1f} {train_minutes:9.2f}"
                     if model == "forecast" else "")
            print(f"{name:10} {model:14} {result['MASE']:7.3f} {result['sMAPE']:7.2f} {result['series']:6d}{extra}")
    print()
    print(f"{'dataset':10} {'interval':>8} {'coverage':>9} {'width':>7} {'MSIS':>7}   (intervals of forecast on the "
          "test set; width and the interval score MSIS, lower better, in units of each series' MASE scale)")
    for name, *_, covered in table:
        for level, result in covered.items():
            print(_interval_line(name, level, result))
        for level, result in covered.items():  # the series too short for the network, where there are any
            if result["short"] is not None:
                print(_interval_line(name, level, result["short"],
                                     f"   of the {result['short']['series']} series too short for the network"))
    print()
    print(summary(table))


def _config(path: pathlib.Path, train: pd.DataFrame, freq: str, horizon: int, out: pathlib.Path, name: str,
            overrides: list[str]):
    """The job's config for the series of `train` (written at `path`), run the period after their last point."""
    cutoff = (train.ds.max() + pd.tseries.frequencies.to_offset(freq)).date().isoformat()
    return load_config(None, [f"data.uri={path}", f"data.freq={freq}", f"model.horizon={horizon}",
                              f"output.uri={out}", f"run.date={cutoff}", f"run.name=bench-{name}-{int(time.time())}",
                              *overrides])


def _interval_line(name: str, level: int, result: dict, note: str = "") -> str:
    """One line of the interval table: coverage, width and MSIS of a Truth.coverage result."""
    return (f"{name:10} {f'{level} %':>8} {100 * result['coverage']:8.1f}% {result['width']:7.2f} "
            f"{result['msis']:7.2f}{note}")


def summary(table: list) -> str:
    """The README's accuracy table (Markdown): per dataset, MASE of `forecast`, the LSTM alone and the
    statsforecast baselines, the training minutes next to them, and the coverage of `forecast`'s intervals."""
    baselines = [m for m in ("AutoETS", "AutoTheta") if all(m in rows for _, rows, *_ in table)]
    levels = sorted({level for *_, covered in table for level in covered})
    header = ["dataset", "`forecast` MASE", "LSTM MASE", *(f"{m} MASE" for m in baselines), "training min",
              *(f"{level} % covered" for level in levels)]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    for name, rows, _, _, train_minutes, _, covered in table:
        scores = (f"{rows[m]['MASE']:.3f}" for m in (FORECAST, LSTM, *baselines))
        cells = [f"{name} ({rows[FORECAST]['series']})", *scores,
                 f"{train_minutes:.2f}", *(f"{100 * covered[level]['coverage']:.1f} %" for level in levels)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out(train: pd.DataFrame, horizon: int, origin: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """--dev: (each series up to its `origin`-th last horizon, that horizon's points), for the series with
    more than origin x horizon + 2 points (the others could not be scored with a training part left)."""
    length = train.groupby("unique_id").y.transform("size")
    train = train[length > origin * horizon + 2]
    from_end = train.groupby("unique_id").cumcount(ascending=False)  # 0: the last point
    before, held = from_end >= origin * horizon, (from_end >= (origin - 1) * horizon) & (from_end < origin * horizon)
    return train[before], train[held]


def statistical(truth: Truth, train: pd.DataFrame, freq: str, horizon: int) -> dict:
    """AutoETS and AutoTheta from statsforecast, when installed (the `bench` extra)."""
    try:
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive
    except ImportError:
        print("statsforecast not installed: skipping AutoETS/AutoTheta (pip install -e '.[bench]')")
        return {}
    season = season_length(freq)
    # statsforecast 2 refuses AutoETS on a series of very few points ("tiny datasets": --dev's cut quarterly
    # series): those get seasonal naive, as our job gives a baseline to a series too short for the network
    sf = StatsForecast(models=[AutoETS(season_length=season), AutoTheta(season_length=season)], freq=freq, n_jobs=1,
                       fallback_model=SeasonalNaive(season_length=season))
    predicted = sf.forecast(df=train[["unique_id", "ds", "y"]], h=horizon).reset_index()
    predicted["ds"] = pd.to_datetime(predicted["ds"])
    return {model: truth.score(predicted, model) for model in ("AutoETS", "AutoTheta")}


if __name__ == "__main__":
    main()
