"""Cost of finding the origins a run scores and calibrates on (forecaster/score.py: find_origins).

    .venv/bin/python bench/origins.py [--dates 540] [--files 2] [--s3]

Writes `--dates` earlier forecast partitions of nightly runs over monthly series (`--files` files of
200 series each, 18 steps, the columns the calibration reads): every run of a month forecasts from
the same cutoff, the next month's first `ds`. Then times find_origins as a run on the next day calls
it, on local disk or, with --s3, on moto's local S3 server (tests/s3server.py): the dates the scores
table scores alone (model.interval_calibration=validation), and with the calibration's search on
to the newest date of each earlier cutoff (realised, the default), each with the footers read one
date at a time and READ_AHEAD dates at a time in threads. Each date costs a listing and one footer
read per file; moto answers from one Python process on this machine's cores, so its per-request
cost is not a cloud store's (whose latency the threads hide better).
"""

from __future__ import annotations

import argparse
import io
import pathlib
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

from forecaster import score  # noqa: E402
from forecaster.intervals import SPREAD_METHODS  # noqa: E402
from forecaster.storage import resolve  # noqa: E402

SERIES, HORIZON, MAX_ORIGINS = 200, 18, 30


def partition(first: pd.Timestamp) -> bytes:
    """One forecast file: SERIES series forecast HORIZON months from `first`."""
    ds = np.tile(pd.date_range(first, periods=HORIZON, freq="MS").values, SERIES)
    table = pa.table({"unique_id": np.repeat([f"s{i}" for i in range(SERIES)], HORIZON), "ds": ds,
                      "cutoff": np.full(len(ds), np.datetime64(first - pd.offsets.MonthBegin(), "us")),
                      "model": ["LSTM+Theta+SES"] * len(ds),
                      **{name: np.ones(len(ds)) for name in ("LSTM", *SPREAD_METHODS, "forecast")}})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def measure(uri: str, put, dates: pd.DatetimeIndex, files: int) -> None:
    for date in dates:
        body = partition(date + pd.offsets.MonthBegin(1))  # the next month's first day: the run's first ds
        for k in range(files):
            put(f"forecasts/forecast_date={date.date()}/part-{k}.parquet", body)
    root, today = resolve(uri), dates[-1] + pd.Timedelta(days=1)
    newest = np.datetime64(today - pd.offsets.MonthBegin(), "us")  # the data ends last month
    print(f"{len(dates)} earlier dates ({dates[0].date()} to {dates[-1].date()}), {files} file(s) each, on {uri}")
    read_ahead = score.READ_AHEAD
    for label, ahead in (("one date at a time", 1), (f"{read_ahead} dates at a time", read_ahead)):
        score.READ_AHEAD = ahead
        for mode, calibrate in (("validation", None), ("realised", ("MS", HORIZON))):
            started = time.perf_counter()
            scored, kept = score.find_origins(root, str(today.date()), newest, MAX_ORIGINS, calibrate)
            took = time.perf_counter() - started
            print(f"  {mode:10} {label:20} {took:6.2f} s   scored {len(scored)} dates, calibrating on "
                  f"{len(kept)} cutoffs")
    score.READ_AHEAD = read_ahead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dates", type=int, default=540, help="nightly dates written (540: about 18 months)")
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--s3", action="store_true", help="on moto's local S3 server instead of local disk")
    args = parser.parse_args()
    dates = pd.date_range("2024-01-01", periods=args.dates, freq="D")
    if args.s3:
        from tests.s3server import local_s3

        with local_s3() as s3:
            bucket, client = s3.bucket("origins"), s3.client()
            measure(f"s3://{bucket}/out", lambda key, body: client.put_object(Bucket=bucket, Key=f"out/{key}",
                                                                                Body=body), dates, args.files)
        return 0
    work = pathlib.Path(tempfile.mkdtemp(prefix="origins-"))
    try:
        def put(key: str, body: bytes) -> None:
            (work / key).parent.mkdir(parents=True, exist_ok=True)
            (work / key).write_bytes(body)

        measure(str(work), put, dates, args.files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
