"""The statistical baselines' cost per series: Theta, DampedTrend, SES, OptimizedTheta and model.statistical's partners,
and model.statistical=auto's choice; and what the validation pass of each epoch costs with them.

    .venv/bin/python bench/statistical.py [--series 512] [--length 120] [--season 12] [--horizon 18] [--repeats 5]
                                          [--validation-series 8192] [--predict-series 8192]

Every series is forecast by Theta, DampedTrend, SES and OptimizedTheta on every run (predict), and the validated
series by the partner of `forecast` on the validation window once per training run (train), so their
cost grows with the number of series. The bench times `forecaster.theta.theta`, `damped_trend`, `ses`,
`optimized_theta`, `statistical` (all four, as predict calls it) and `partner_errors` (model.statistical=auto's errors
of both candidates on the last 3 horizons, once per validated series per training run, as validation
pays for them: given its own fits of the last horizon, so the two horizons before it) on one block
of random seasonal series of one length, the shape predict and validation hand them
(train.series_per_block: 512), in one process on one core, and prints the median microseconds per
series over the repeats and the ratio to Theta's.

The validation pass (forecaster.train._holdout_pass, the default model at data.freq=MS and the
horizon, on one CPU thread) over `--validation-series` such series, three passes over the same
ValidationRows: the first computes what no epoch changes (the partners, scales, actuals, baseline
scores, auto's choice: ValidationRows.baselines and .choice), the later ones reuse it: first against
later is what every epoch saves against a pass that recomputed it.

The bare predictor (forecaster.predict.SeriesPredictor on an untrained checkpoint of the default
model with an interval calibration, one thread, fp32, blocks of 4096 series in memory: no Ray, no
reading or writing) on `--predict-series` such series: its series/s with the intervals in each
model.interval_unit (spread: the models' spread is computed for every series), and the share of its
time that the statistical forecasts take (it computes all four for every series, whatever
model.statistical).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from forecaster import checkpoint, intervals  # noqa: E402
from forecaster.checkpoint import TrainingState  # noqa: E402
from forecaster.config import INTERVAL_UNITS, load_config  # noqa: E402
from forecaster.covariates import feature_spec  # noqa: E402
from forecaster.evaluate import holdout_actual, mase_scale  # noqa: E402
from forecaster.features import SeriesBlock  # noqa: E402
from forecaster.model import build_model  # noqa: E402
from forecaster.predict import SeriesPredictor  # noqa: E402
from forecaster.spec import LoopSettings, ModelSpec  # noqa: E402
from forecaster.theta import damped_trend, optimized_theta, partner_errors, ses, statistical, theta  # noqa: E402
from forecaster.train import ValidationRows, _holdout_pass  # noqa: E402


class _Rows:
    """A training shard's stand-in: series rows in memory, iterated in batches as Ray Data's are."""

    def __init__(self, table: pa.Table):
        self.table = table

    def iter_batches(self, batch_size, batch_format):
        for start in range(0, self.table.num_rows, batch_size):
            yield self.table.slice(start, batch_size)


def _series(rng: np.random.Generator, count: int, length: int, season: int) -> list[np.ndarray]:
    t = np.arange(length)
    shape = 1 + 0.3 * np.sin(2 * np.pi * t / max(season, 1))
    return [(100 + rng.uniform(-0.5, 1.0) * t + rng.normal(0, 5, length).cumsum().clip(-50, 50)) * shape
            for _ in range(count)]


def _rows(series: list[np.ndarray]) -> pa.Table:
    """Series rows (forecaster.columns.SERIES_SCHEMA) of monthly `series` ending 2020-12."""
    last = np.datetime64("2020-12", "M")
    return pa.table({"unique_id": [f"s{i}" for i in range(len(series))],
                     "y": pa.array([v.tolist() for v in series], pa.list_(pa.float64())),
                     "first_ds": pa.array(np.array([last - (len(v) - 1) for v in series]).astype("datetime64[us]")),
                     "last_ds": pa.array(np.full(len(series), last).astype("datetime64[us]")),
                     "length": [len(v) for v in series]})


def _spec(horizon: int, rows: pa.Table):
    cfg = load_config(None, ["data.freq=MS", f"model.horizon={horizon}"])
    return cfg, ModelSpec.from_config(cfg, feature_spec(cfg, rows.schema))


def validation_passes(series: list[np.ndarray], horizon: int) -> list[float]:
    """Seconds of three validation passes over `series`."""
    rows = _rows(series)
    cfg, spec = _spec(horizon, rows)
    settings = LoopSettings.from_config(cfg, len(series))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, validated = build_model(spec), ValidationRows(_Rows(rows), settings)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        _holdout_pass(model, validated, spec, settings, torch.device("cpu"))
        seconds.append(time.perf_counter() - started)
    return seconds


def predictor_share(series: list[np.ndarray], horizon: int, repeats: int) -> tuple[dict[str, float], float]:
    """({model.interval_unit: series/s of the bare predictor over `series`}, the share of the default
    unit's predictor time that theta.statistical takes on the same blocks), medians over the repeats,
    the predictors timed in turn. Each checkpoint holds a calibration in its unit, so the predictor
    draws intervals as a trained one does."""
    import ray.train

    rows = _rows(series)
    _, spec = _spec(horizon, rows)
    torch.set_num_threads(1)
    predictors = {}
    for unit in INTERVAL_UNITS:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as directory:
            calibration = intervals.record(np.ones((2, horizon)), (80, 95), unit)
            checkpoint.save(directory, build_model(spec), spec, state=TrainingState(calibration=calibration))
            predictors[unit] = SeriesPredictor(ray.train.Checkpoint.from_directory(directory), freq="MS", season=12,
                                               horizon=horizon, fallback="none", combine="theta",
                                               nonnegative="auto", statistical="theta_damped", levels=(80, 95))
    batches = [rows.slice(start, 4096) for start in range(0, rows.num_rows, 4096)]
    blocks = [predictors[INTERVAL_UNITS[0]].block(batch) for batch in batches]
    for predictor in predictors.values():
        predictor(batches[0])  # warm-up: the first forward pass
    whole, part = {unit: [] for unit in predictors}, []
    for _ in range(repeats):
        for unit, predictor in predictors.items():
            started = time.perf_counter()
            for batch in batches:
                predictor(batch)
            whole[unit].append(time.perf_counter() - started)
        started = time.perf_counter()
        for block in blocks:
            statistical(block, block.lengths, horizon, 12)
        part.append(time.perf_counter() - started)
    default = INTERVAL_UNITS[0]
    return ({unit: len(series) / float(np.median(times)) for unit, times in whole.items()},
            float(np.median(part) / np.median(whole[default])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=512)
    parser.add_argument("--length", type=int, default=120)
    parser.add_argument("--season", type=int, default=12)
    parser.add_argument("--horizon", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--validation-series", type=int, default=8192)
    parser.add_argument("--predict-series", type=int, default=8192)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    block = SeriesBlock(_series(rng, args.series, args.length, args.season))
    ends = block.lengths
    cutoffs = ends - args.horizon
    last = (statistical(block, cutoffs, args.horizon, args.season), holdout_actual(block, args.horizon),
            mase_scale(block, cutoffs, args.season))  # what validation has fitted before auto's errors
    methods = {"Theta": theta, "DampedTrend": damped_trend, "SES": ses, "OptimizedTheta": optimized_theta,
               "all (predict)": lambda b, e, h, s: statistical(b, e, h, s),
               "auto's errors": lambda b, e, h, s: partner_errors(b, h, s, last=last)}
    per_series = {}
    for name, method in methods.items():
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            method(block, ends, args.horizon, args.season)
            times.append(time.perf_counter() - started)
        per_series[name] = float(np.median(times)) / args.series * 1e6
    print(f"{args.series} series of {args.length} points, season {args.season}, horizon {args.horizon}; "
          f"median of {args.repeats}")
    print(f"{'method':16} {'us/series':>10} {'x Theta':>8}")
    for name, us in per_series.items():
        print(f"{name:16} {us:10.1f} {us / per_series['Theta']:8.2f}")
    if args.validation_series:
        first, *later = validation_passes(_series(rng, args.validation_series, args.length, 12), args.horizon)
        print(f"validation pass over {args.validation_series} series (monthly, horizon {args.horizon}): first "
              f"{first:.2f} s, later {' / '.join(f'{s:.2f}' for s in later)} s: later / first = "
              f"{np.mean(later) / first:.2f}")
    if args.predict_series:
        rates, share = predictor_share(_series(rng, args.predict_series, args.length, 12), args.horizon,
                                       args.repeats)
        print(f"bare predictor over {args.predict_series} series: "
              + ", ".join(f"{rate:,.0f} series/s with model.interval_unit={unit}" for unit, rate in rates.items())
              + f"; the statistical methods (theta.statistical) take {100 * share:.0f} % of its time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
