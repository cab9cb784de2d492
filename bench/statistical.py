"""The statistical baselines' cost per series: Theta, DampedTrend and model.statistical's partners;
and what the validation pass of each epoch costs with them.

    .venv/bin/python bench/statistical.py [--series 512] [--length 120] [--season 12] [--horizon 18] [--repeats 5]
                                          [--validation-series 8192]

Every series is forecast by Theta and DampedTrend on every run (predict), and the partner of
`forecast` again on the validation window at every epoch (train), so their cost grows with the
number of series. The bench times `forecaster.theta.theta`, `damped_trend` and `statistical` (both,
as predict calls it) on one block of random seasonal series of one length, the shape predict and
validation hand them (train.series_per_block: 512), in one process on one core, and prints the
median microseconds per series over the repeats and the ratio to Theta's.

The validation pass (forecaster.train._holdout_pass, the default model at data.freq=MS and the
horizon, on one CPU thread) over `--validation-series` such series, three passes over the same
ValidationRows: the first computes what no epoch changes (the partner, scales, actuals, baseline
scores: ValidationRows.baselines), the later ones reuse it, so first against later is the
statistical part's share of a pass that recomputed it every epoch.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from forecaster.config import load_config  # noqa: E402
from forecaster.covariates import feature_spec  # noqa: E402
from forecaster.features import SeriesBlock  # noqa: E402
from forecaster.model import build_model  # noqa: E402
from forecaster.spec import LoopSettings, ModelSpec  # noqa: E402
from forecaster.theta import damped_trend, statistical, theta  # noqa: E402
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


def validation_passes(series: list[np.ndarray], horizon: int) -> list[float]:
    """Seconds of three validation passes over `series` (monthly, ending 2020-12)."""
    last = np.datetime64("2020-12", "M")
    rows = pa.table({"unique_id": [f"s{i}" for i in range(len(series))],
                     "y": pa.array([v.tolist() for v in series], pa.list_(pa.float64())),
                     "first_ds": pa.array(np.array([last - (len(v) - 1) for v in series]).astype("datetime64[us]")),
                     "last_ds": pa.array(np.full(len(series), last).astype("datetime64[us]")),
                     "length": [len(v) for v in series]})
    cfg = load_config(None, ["data.freq=MS", f"model.horizon={horizon}"])
    spec = ModelSpec.from_config(cfg, feature_spec(cfg, rows.schema))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=512)
    parser.add_argument("--length", type=int, default=120)
    parser.add_argument("--season", type=int, default=12)
    parser.add_argument("--horizon", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--validation-series", type=int, default=8192)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    block = SeriesBlock(_series(rng, args.series, args.length, args.season))
    ends = block.lengths
    methods = {"Theta": theta, "DampedTrend": damped_trend,
               "both (predict)": lambda b, e, h, s: statistical(b, e, h, s)}
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
