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

from forecaster.pipeline import run
from forecaster.synthetic import seasonal_series
from tests.specs import job_config

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
    """SERIES good monthly series in FILES Parquet files, plus one series with a NaN (rejected: non_finite_y)."""
    good = seasonal_series(SERIES, (36, 60), freq="MS", seed=11, noise=0.05).to_pandas()
    bad = pd.DataFrame({"unique_id": ["bad"] * 24, "ds": pd.date_range("2017-01-01", periods=24, freq="MS"),
                        "y": [1.0] * 10 + [float("nan")] + [1.0] * 13})
    bad["ds"] = bad["ds"].astype(good["ds"].dtype)
    frame = pd.concat([good, bad], ignore_index=True)
    ids = sorted(frame.unique_id.unique())
    fs = _fs()
    for i in range(FILES):
        part = frame[frame.unique_id.isin(ids[i::FILES])]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), f"{bucket}/input/part-{i}.parquet",
                       filesystem=fs)
    return frame


def _config(bucket: str, *extra: str):
    return job_config(f"s3://{bucket}/input", f"s3://{bucket}/out", DATE, HORIZON,
                      f"train.storage_path=s3://{bucket}/ckpt", "train.max_epochs=2", "train.refit_epochs=0",
                      "model.hidden_size=16", "train.num_workers=1", *extra)


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
    # only the job's tables and its report; nothing left of the staging directories but (possibly) empty markers
    assert {k.split("/")[1] for k in keys} <= {"forecasts", "rejects", "scores", "manifests", "reports"}, keys
    assert f"out/reports/forecast_date={DATE}.html" in keys and f"out/scores/forecast_date={DATE}/" in "".join(keys)
    assert not [k for k in keys if "/_staging/" in k and not k.endswith("/")], keys
    forecast_files = [k for k in keys if k.startswith(f"out/forecasts/forecast_date={DATE}/")
                      and k.endswith(".parquet")]
    reject_files = [k for k in keys if k.startswith(f"out/rejects/forecast_date={DATE}/") and k.endswith(".parquet")]
    assert forecast_files and reject_files, keys
    assert f"out/manifests/forecast_date={DATE}.json" in keys
    assert manifest["outputs"]["forecasts"] == f"s3://{bucket}/out/forecasts/forecast_date={DATE}"
    with _fs().open(f"{bucket}/out/manifests/forecast_date={DATE}.json") as fh:
        on_s3 = json.load(fh)
    assert on_s3["counts"] == manifest["counts"]
    counts = manifest["counts"]
    assert (counts["input"], counts["forecast"], counts["rejected"]) == (SERIES + 1, SERIES, 1), counts
    assert counts["reject_reasons"] == {"non_finite_y": 1}, counts


def test_forecast_and_reject_rows(s3_run):
    bucket, frame, _ = s3_run
    forecasts = _read(bucket, "forecasts")
    assert len(forecasts) == SERIES * HORIZON
    assert forecasts.groupby("unique_id").size().eq(HORIZON).all()
    assert set(forecasts.unique_id) == set(frame.unique_id) - {"bad"}
    assert forecasts.LSTM.notna().all()
    last = frame.groupby("unique_id").ds.max()
    assert (forecasts.cutoff.values == last.loc[forecasts.unique_id].values).all()
    rejects = _read(bucket, "rejects")
    assert list(zip(rejects.unique_id, rejects.reason, strict=True)) == [("bad", "non_finite_y")]


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
    """The rerun forecasts with the first run's model as it is (the subject is the commit on S3, not training:
    no second Ray Train run)."""
    bucket, _, first = s3_run
    before = _read(bucket, "forecasts")
    manifest = run(_config(bucket, f"train.warm_start={first['checkpoint_uri']}", "train.warm_epochs=0"))
    assert manifest["checkpoint_uri"] == first["checkpoint_uri"]
    again = _read(bucket, "forecasts")
    assert len(again) == len(before) == SERIES * HORIZON
    assert not again.duplicated(["unique_id", "ds"]).any()
    assert len(_read(bucket, "rejects")) == 1
    assert manifest["counts"]["forecast"] == SERIES
    keys = s3_server.keys(bucket, "out/")
    assert not [k for k in keys if "/_staging/" in k and not k.endswith("/")], keys


def test_worker_env_vars_pass_storage_settings_but_not_what_the_job_sets():
    """No Ray: what forecaster.runtime.init_ray gives the workers through runtime_env["env_vars"]."""
    from forecaster.runtime import RAY_ENV, worker_env_vars

    environ = {**RAY_ENV, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ENDPOINT_URL": "http://e",
               "AWS_SESSION_TOKEN": "", "STORAGE_EMULATOR_HOST": "http://g", "HOME": "/root", "PATH": "/bin"}
    # credentials are never forwarded: Ray logs runtime_env values (see tests/test_secrets.py)
    assert worker_env_vars(environ) == {**RAY_ENV, "AWS_ENDPOINT_URL": "http://e",
                                        "STORAGE_EMULATOR_HOST": "http://g"}
    # inside `ray job submit`: Ray refuses to merge two runtime_envs that name the same variable
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip",
                           "env_vars": {"AWS_DEFAULT_REGION": "eu-west-1", "RAY_DEDUP_LOGS": "0"}}}
    passed = worker_env_vars({**environ, "AWS_DEFAULT_REGION": "us-east-1",
                              "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job)})
    assert "AWS_DEFAULT_REGION" not in passed and "RAY_DEDUP_LOGS" not in passed
    assert passed["AWS_ENDPOINT_URL"] == "http://e"
