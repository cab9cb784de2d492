"""Ray Train's overhead on a small training: the wall time of `train.fit` by controller poll interval.

    .venv/bin/python bench/train_overhead.py [--epochs 20] [--intervals 0.5,0.1] [--repeats 2]

Ray Train 2.60 keeps one unconsumed report per worker, and its controller takes it when it polls the
workers, every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: a `ray.train.report` waits for the previous one to be
taken, so an epoch shorter than the interval waits for the poll. The bench runs the job's own `fit` (one
worker, 40 series of 60 points, `--epochs` epochs, no early stop, no refit) once per interval in turn,
`--repeats` times, in one local Ray (Ray Train passes the driver's RAY_TRAIN_* variables to each run's
controller), and prints each fit's wall time and the mean per interval against the first interval's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq  # noqa: E402

from forecaster.config import load_config  # noqa: E402
from forecaster.pipeline import clean_series, validate_series  # noqa: E402
from forecaster.read import read_series  # noqa: E402
from forecaster.runtime import init_ray  # noqa: E402
from forecaster.synthetic import seasonal_series  # noqa: E402
from forecaster.train import fit  # noqa: E402

INTERVAL = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--intervals", default="0.5,0.1", help="poll intervals in seconds, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    intervals = args.intervals.split(",")

    root = pathlib.Path(tempfile.mkdtemp(prefix="train-overhead-"))
    (root / "in").mkdir()
    pq.write_table(seasonal_series(40, 60, seed=11, noise=0.05), root / "in" / "part-0.parquet")

    def config(out: str):
        return load_config(None, [
            f"data.uri={root / 'in'}", "data.freq=MS", "model.horizon=6", f"output.uri={root / out}",
            "run.date=2024-01-01", "model.hidden_size=16", "train.windows_per_series=16", "train.num_workers=1",
            f"train.max_epochs={args.epochs}", f"train.patience={args.epochs}", "train.refit_epochs=0",
            "ray.num_cpus=3"])

    first = config("read")
    init_ray(first)
    clean = clean_series(validate_series(first, read_series(first)))  # read once, trained on by every fit
    seconds: dict[str, list[float]] = {interval: [] for interval in intervals}
    for repeat in range(args.repeats):
        for interval in intervals:
            os.environ[INTERVAL] = interval
            started = time.perf_counter()
            result = fit(config(f"out-{repeat}-{interval}"), clean)
            seconds[interval].append(time.perf_counter() - started)
            epochs = len(result.metrics["history"])
            print(f"{INTERVAL}={interval}: fit {seconds[interval][-1]:.1f} s ({epochs} epochs)", flush=True)
    base = sum(seconds[intervals[0]]) / len(seconds[intervals[0]])
    for interval in intervals:
        mean = sum(seconds[interval]) / len(seconds[interval])
        print(f"{INTERVAL}={interval}: mean {mean:.1f} s, {mean / base:.2f}x of {intervals[0]} s "
              f"({(mean - base) / args.epochs:+.2f} s per epoch)")


if __name__ == "__main__":
    main()
