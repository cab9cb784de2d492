"""Cost of scoring earlier forecasts (forecaster/score.py) as a nightly run pays it.

    flock /tmp/ray.lock .venv/bin/python bench/score.py [--series 100000] [--origins 10]

Writes N monthly series of 120 points (Parquet files of 5 000 series) and `--origins` earlier forecast
partitions shaped like the job's (18 steps, the five model columns, 5 000 series a file) whose cutoffs lie
10..19 points before today's end, so every origin has steps observed. Then, in one local Ray started as
the job starts it: read + validate (the job's own functions), and `score_earlier`, timed separately, with
the driver's peak RSS. Prints the scoring time per origin and in all, and its share of the read + validate
the run does anyway.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from forecaster.config import load_config  # noqa: E402
from forecaster.pipeline import validate_series  # noqa: E402
from forecaster.read import read_series  # noqa: E402
from forecaster.runtime import init_ray  # noqa: E402
from forecaster.score import score_earlier  # noqa: E402
from forecaster.storage import resolve  # noqa: E402
from forecaster.synthetic import seasonal_series  # noqa: E402

PER_FILE, LENGTH, HORIZON = 5000, 120, 18
MODELS = ("LSTM", "Naive", "SeasonalNaive", "Theta", "forecast")


def write_inputs(work: pathlib.Path, series: int) -> pathlib.Path:
    data = work / "input"
    data.mkdir()
    for i in range(0, series, PER_FILE):
        part = seasonal_series(min(PER_FILE, series - i), LENGTH, seed=i, id_prefix=f"f{i // PER_FILE}-")
        pq.write_table(part, data / f"part-{i // PER_FILE:04d}.parquet")
    return data


def write_origins(work: pathlib.Path, data: pathlib.Path, origins: int) -> list[str]:
    """Forecast partitions forecasts/forecast_date=2025-12-<k>/ from each input file's ids and dates."""
    dates = []
    rng = np.random.default_rng(0)
    for k in range(origins):
        date = f"2025-12-{k + 1:02d}"
        out = work / "out" / "forecasts" / f"forecast_date={date}"
        out.mkdir(parents=True)
        back = 19 - k  # points between the cutoff and today's end
        for path in sorted(data.glob("*.parquet")):
            table = pq.read_table(path, columns=["unique_id", "ds"]).to_pandas()
            last = table.groupby("unique_id", sort=False)["ds"].max()
            cutoff = last - pd.DateOffset(months=back)
            ids = np.repeat(last.index.to_numpy(), HORIZON)
            steps = np.tile(np.arange(1, HORIZON + 1), len(last))
            ds = pd.DatetimeIndex(np.repeat(cutoff.to_numpy(), HORIZON)).to_period("M").to_timestamp()
            ds = (ds.to_period("M") + steps).to_timestamp()
            columns = {"unique_id": ids, "ds": ds.to_numpy().astype("datetime64[us]")}
            for model in MODELS:
                columns[model] = rng.uniform(10, 1000, len(ids))
            columns["model"] = np.full(len(ids), "LSTM+Theta")
            columns["cutoff"] = np.repeat(cutoff.to_numpy().astype("datetime64[us]"), HORIZON)
            pq.write_table(pa.table(columns), out / path.name)
        dates.append(date)
    return dates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--origins", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="score-", dir=ROOT / "bench"))
    try:
        data = write_inputs(work, args.series)
        write_origins(work, data, args.origins)
        cfg = load_config(None, [f"data.uri={data}", "data.freq=MS", f"model.horizon={HORIZON}",
                                 f"output.uri={work / 'out'}", "run.date=2026-01-01"])
        init_ray(cfg)
        started = time.perf_counter()
        validated = validate_series(cfg, read_series(cfg))
        read_validate = time.perf_counter() - started
        started = time.perf_counter()
        entry = score_earlier(cfg, resolve(cfg.output.uri), validated).scores
        scoring = time.perf_counter() - started
        rows = sum(o["series"]["scored"] for o in entry["origins"])
        print(f"series {args.series}, origins scored {len(entry['origins'])} of {args.origins}, "
              f"series-origins scored {rows}")
        print(f"read + validate            {read_validate:7.1f} s")
        print(f"score {args.origins} origins           {scoring:7.1f} s  ({scoring / args.origins:.1f} s an origin, "
              f"{rows / scoring:,.0f} series-origins/s)")
        print(f"scoring / read+validate    {scoring / read_validate:7.2f}")
        print(f"driver peak RSS            {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:7.2f} GiB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
