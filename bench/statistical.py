"""The statistical baselines' cost per series: Theta, DampedTrend and model.statistical's partners.

    .venv/bin/python bench/statistical.py [--series 512] [--length 120] [--season 12] [--horizon 18] [--repeats 5]

Every series is forecast by Theta and DampedTrend on every run (predict), and the partner of
`forecast` again on the validation window at every epoch (train), so their cost grows with the
number of series. The bench times `forecaster.theta.theta`, `damped_trend` and `statistical` (both,
as predict calls it) on one block of random seasonal series of one length, the shape predict and
validation hand them (train.series_per_block: 512), in one process on one core, and prints the
median microseconds per series over the repeats and the ratio to Theta's.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from forecaster.features import SeriesBlock  # noqa: E402
from forecaster.theta import damped_trend, statistical, theta  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=512)
    parser.add_argument("--length", type=int, default=120)
    parser.add_argument("--season", type=int, default=12)
    parser.add_argument("--horizon", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t = np.arange(args.length)
    season = 1 + 0.3 * np.sin(2 * np.pi * t / max(args.season, 1))
    series = [(100 + rng.uniform(-0.5, 1.0) * t + rng.normal(0, 5, args.length).cumsum().clip(-50, 50)) * season
              for _ in range(args.series)]
    block = SeriesBlock(series)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
