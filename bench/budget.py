"""The nightly budget: how accuracy and time move with train.max_windows_per_epoch at 100 000 series.

    flock /tmp/ray.lock .venv/bin/python bench/budget.py [--series 100000] [--caps 32768 131072 262144]
                                                         [--set key=value ...]

N synthetic monthly series (forecaster.synthetic.seasonal_series: level x (1 + trend + seasonal swing) +
noise) of 120 + 18 points, in Parquet files of 5 000 series; the last 18 points of each are held out. For
each cap the job (`forecaster.pipeline.run`, as bench/accuracy.py runs it) trains on the first 120 points
with train.max_windows_per_epoch=<cap> and train.max_epochs=5 (patience 2; other keys at their defaults,
train.max_validation_series included) and forecasts 18 months; the forecasts are scored against the held-out
points (MASE, bench/accuracy.py's Truth). Printed per cap: windows per series and epoch, epochs, training
seconds (Ray Train's start included), wall seconds of the whole run, MASE of `forecast` and of the LSTM.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import Truth  # noqa: E402

from forecaster.config import load_config  # noqa: E402
from forecaster.pipeline import run  # noqa: E402
from forecaster.spec import windows_per_series  # noqa: E402
from forecaster.synthetic import seasonal_series  # noqa: E402

SERIES_PER_FILE = 5000
LENGTH, HORIZON, FREQ = 120, 18, "MS"
RUN_DATE = "2025-01-01"  # the first held-out month: series start 2015-01, 120 months of training


def write_input(directory: pathlib.Path, n_series: int) -> pd.DataFrame:
    """Training parts as Parquet files under `directory`; returns the held-out points (long frame)."""
    directory.mkdir(parents=True)
    held_out = []
    for file, start in enumerate(range(0, n_series, SERIES_PER_FILE)):
        table = seasonal_series(min(SERIES_PER_FILE, n_series - start), LENGTH + HORIZON, freq=FREQ, seed=file,
                                id_prefix=f"f{file:04d}-")
        cutoff = pa.scalar(pd.Timestamp(RUN_DATE), type=table["ds"].type)
        pq.write_table(table.filter(pc.less(table["ds"], cutoff)), directory / f"part-{file:04d}.parquet")
        held_out.append(table.filter(pc.greater_equal(table["ds"], cutoff)).to_pandas())
    return pd.concat(held_out, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--caps", type=int, nargs="+", default=[32768, 131072, 262144])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    work = ROOT / "bench" / "work" / "budget"
    shutil.rmtree(work, ignore_errors=True)
    test = write_input(work / "input", args.series)
    train = pd.read_parquet(work / "input")
    truth = Truth(train, test, FREQ)
    rows = []
    for cap in args.caps:
        out = work / f"out-{cap}"
        cfg = load_config(None, [f"data.uri={work / 'input'}", f"data.freq={FREQ}", f"model.horizon={HORIZON}",
                                 f"output.uri={out}", f"run.date={RUN_DATE}", f"run.name=budget-{cap}",
                                 "train.max_epochs=5", "train.patience=2", f"train.max_windows_per_epoch={cap}",
                                 *args.overrides])
        started = time.perf_counter()
        manifest = run(cfg)
        wall = time.perf_counter() - started
        forecast = pd.read_parquet(out / "forecasts" / f"forecast_date={cfg.forecast_date}")
        metrics, timings = manifest["metrics"], manifest.get("timings_s", {})
        rows.append((cap, windows_per_series(cfg, args.series), metrics.get("epochs"),
                     timings.get("train"), wall, truth.score(forecast, "forecast")["MASE"],
                     truth.score(forecast, "LSTM")["MASE"], metrics.get("val_series")))
        print(f"cap {cap}: {wall:.1f} s", flush=True)
    print()
    print(f"{args.series} series, max_epochs 5")
    print(f"{'cap':>9} {'windows/series':>14} {'epochs':>6} {'train s':>8} {'wall s':>7} {'MASE forecast':>13} "
          f"{'MASE LSTM':>9} {'validated':>9}")
    for cap, per_series, epochs, train_s, wall, mase_fc, mase_lstm, validated in rows:
        print(f"{cap:>9} {per_series:>14.3f} {epochs!s:>6} {train_s or float('nan'):>8.1f} {wall:>7.1f} "
              f"{mase_fc:>13.3f} {mase_lstm:>9.3f} {validated!s:>9}")


if __name__ == "__main__":
    main()
