"""The whole job against a real S3 API: moto's server on loopback (tests/s3server.py).

Input, output and Ray Train's checkpoints all live in one bucket; Ray Data and Ray Train read and write
them from Ray workers, which reach the server through the AWS_* variables that `s3_server` sets before
`ray_session` starts Ray (see tests/conftest.py).
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.config import load_config
from forecaster.pipeline import run
from forecaster.synthetic import seasonal_series

pytestmark = pytest.mark.ray

s3fs = pytest.importorskip("s3fs")

HORIZON = 6
SERIES = 20
DATE = "2024-01-01"
FILES = 4


def _fs():
    # a fresh client: fsspec caches instances and directory listings, and Ray workers wrote these objects
    return s3fs.S3FileSystem(skip_instance_cache=True)


def _upload_input(bucket: str) -> pd.DataFrame:
    """SERIES good monthly series in FILES Parquet files, plus one series too short to forecast."""
    good = seasonal_series(SERIES, (36, 60), freq="MS", seed=11, noise=0.05).to_pandas()
    short = pd.DataFrame({"unique_id": ["short"] * 4, "ds": pd.date_range("2019-01-01", periods=4, freq="MS"),
                          "y": [1.0, 2.0, 3.0, 4.0]})
    short["ds"] = short["ds"].astype(good["ds"].dtype)
    frame = pd.concat([good, short], ignore_index=True)
    ids = sorted(frame.unique_id.unique())
    fs = _fs()
    for i in range(FILES):
        part = frame[frame.unique_id.isin(ids[i::FILES])]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), f"{bucket}/input/part-{i}.parquet",
                       filesystem=fs)
    return frame


def _config(bucket: str):
    return load_config(None, [
        f"data.uri=s3://{bucket}/input", "data.freq=MS", f"model.horizon={HORIZON}",
        f"output.uri=s3://{bucket}/out", f"train.storage_path=s3://{bucket}/ckpt", f"run.date={DATE}",
        "train.max_epochs=2", "model.hidden_size=16",
    ])


def _read(bucket: str, table: str) -> pd.DataFrame:
    return pq.read_table(f"{bucket}/out/{table}/forecast_date={DATE}", filesystem=_fs()).to_pandas()


@pytest.fixture(scope="module")
def s3_run(s3_server, ray_session):
    bucket = s3_server.bucket("e2e")
    frame = _upload_input(bucket)
    manifest = run(_config(bucket))
    return bucket, frame, manifest


def test_partition_layout_on_s3(s3_server, s3_run):
    bucket, _, manifest = s3_run
    keys = s3_server.keys(bucket, "out/")
    # only the three tables; nothing left of the staging directories but (possibly) empty markers
    assert {k.split("/")[1] for k in keys} <= {"forecasts", "rejects", "manifests"}, keys
    assert not [k for k in keys if "/_staging/" in k and not k.endswith("/")], keys
    forecast_files = [k for k in keys if k.startswith(f"out/forecasts/forecast_date={DATE}/")
                      and k.endswith(".parquet")]
    reject_files = [k for k in keys if k.startswith(f"out/rejects/forecast_date={DATE}/") and k.endswith(".parquet")]
    assert forecast_files and reject_files, keys
    assert f"out/manifests/forecast_date={DATE}.json" in keys
    assert manifest["outputs"]["forecasts"] == f"s3://{bucket}/out/forecasts/forecast_date={DATE}"
    with _fs().open(f"{bucket}/out/manifests/forecast_date={DATE}.json") as fh:
        on_s3 = json.load(fh)
    assert on_s3["counts"] == manifest["counts"] == {
        "input": SERIES + 1, "forecast": SERIES, "rejected": 1, "reject_reasons": {"too_short": 1}}


def test_forecast_and_reject_rows(s3_run):
    bucket, frame, _ = s3_run
    forecasts = _read(bucket, "forecasts")
    assert len(forecasts) == SERIES * HORIZON
    assert forecasts.groupby("unique_id").size().eq(HORIZON).all()
    assert set(forecasts.unique_id) == set(frame.unique_id) - {"short"}
    assert forecasts.LSTM.notna().all()
    last = frame.groupby("unique_id").ds.max()
    assert (forecasts.cutoff.values == last.loc[forecasts.unique_id].values).all()
    rejects = _read(bucket, "rejects")
    assert list(zip(rejects.unique_id, rejects.reason, strict=True)) == [("short", "too_short")]


def test_checkpoint_is_in_the_bucket(s3_server, s3_run):
    bucket, _, manifest = s3_run
    uri = manifest["checkpoint_uri"]
    assert uri.startswith(f"s3://{bucket}/ckpt/"), uri
    prefix = uri[len(f"s3://{bucket}/"):].rstrip("/") + "/"
    under = s3_server.keys(bucket, prefix)
    assert prefix + "model.pt" in under and prefix + "config.json" in under, under
    # Ray Train keeps its run state (run name = <run.name>-<date>) next to the checkpoints
    assert any(k.startswith(f"ckpt/forecaster-{DATE}/") for k in s3_server.keys(bucket, "ckpt/"))


def test_rerun_same_date_replaces_the_partition(s3_server, s3_run):
    bucket, _, _ = s3_run
    before = _read(bucket, "forecasts")
    manifest = run(_config(bucket))
    again = _read(bucket, "forecasts")
    assert len(again) == len(before) == SERIES * HORIZON
    assert not again.duplicated(["unique_id", "ds"]).any()
    assert len(_read(bucket, "rejects")) == 1
    assert manifest["counts"]["forecast"] == SERIES
    keys = s3_server.keys(bucket, "out/")
    assert not [k for k in keys if "/_staging/" in k and not k.endswith("/")], keys
