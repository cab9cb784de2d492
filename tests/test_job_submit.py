"""`ray job submit` against a real local Ray head, as the nightly job runs on a cluster.

The head is started with this virtualenv's `ray start --head --block` (so `python` on the job's PATH is the
venv's python, checked below), every port explicit and free, a private --temp-dir (the machine may run other
Ray instances: nothing here may touch them), and the job is submitted with the real CLI:

    ray job submit --address http://127.0.0.1:<dashboard port> --working-dir <repo> --no-wait -- python -m jobs.nightly

Node start, teardown and the authentication setting: tests/raycluster.py.

Working dir upload: Ray honours .gitignore (and .rayignore) of the working dir unless
RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 (ray/_private/runtime_env/packaging.py), so .venv/, out/ and bench/work/ stay
behind; .git is excluded with runtime_env `excludes`. The test checks what was unpacked on the node. The job
also sets env_vars of its own (as a job that passes credentials does): forecaster.runtime.init_ray must not
repeat them, or Ray refuses to merge the two runtime_envs and the job fails at ray.init.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from forecaster.synthetic import seasonal_series
from tests.raycluster import ROOT, VENV_BIN, get_json, ray_env, start_head

pytestmark = pytest.mark.ray

HORIZON = 6
SERIES = 12
DATE = "2024-01-01"
JOB_TIMEOUT_S = 360
# env_vars: a job that sets variables itself, as users pass credentials or logging settings; init_ray must not
# name them again in its own runtime_env (Ray refuses to merge two runtime_envs that share a variable name).
JOB_RUNTIME_ENV = {"excludes": [".git"], "env_vars": {"RAY_DEDUP_LOGS": "0", "AWS_DEFAULT_REGION": "us-east-1"}}


@pytest.fixture(scope="module")
def ray_head():
    head = start_head(num_cpus=3)
    try:
        yield head
    finally:
        head.stop()


def test_nightly_job_via_ray_job_submit(ray_head, tmp_path):
    data = tmp_path / "input.parquet"
    out = tmp_path / "out"
    pq.write_table(seasonal_series(SERIES, 48, freq="MS", seed=5, noise=0.05), data)
    # which python a job runs: the venv's, found on the PATH the head was started with
    probe = ray_head.cli("job", "submit", "--address", ray_head.dashboard, "--",
                         "python", "-c", "import sys; print('JOB_PYTHON_PREFIX', sys.prefix)")
    prefix = re.search(r"JOB_PYTHON_PREFIX (\S+)", probe.stdout)
    assert probe.returncode == 0 and prefix, probe.stdout + probe.stderr
    assert Path(prefix.group(1)) == Path(sys.prefix)

    job_id = f"forecaster-test-{uuid.uuid4().hex[:8]}"
    overrides = [f"data.uri={data}", "data.freq=MS", f"model.horizon={HORIZON}", f"output.uri={out}",
                 f"run.date={DATE}", "train.max_epochs=2", "model.hidden_size=16"]
    submitted = ray_head.cli(
        "job", "submit", "--address", ray_head.dashboard, "--submission-id", job_id, "--working-dir", str(ROOT),
        "--runtime-env-json", json.dumps(JOB_RUNTIME_ENV), "--no-wait", "--",
        "python", "-m", "jobs.nightly", *[a for kv in overrides for a in ("--set", kv)],
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    status = ray_head.wait_for_job(job_id, JOB_TIMEOUT_S)
    logs = ray_head.job_logs(job_id)
    if status != "SUCCEEDED":
        print(logs)
    assert status == "SUCCEEDED", f"job {job_id} ended {status}; logs:\n{logs[-8000:]}"

    forecasts = pq.read_table(out / "forecasts" / f"forecast_date={DATE}").to_pandas()
    assert len(forecasts) == SERIES * HORIZON
    assert forecasts.groupby("unique_id").size().eq(HORIZON).all()
    assert not forecasts.duplicated(["unique_id", "ds"]).any()
    manifest = json.loads((out / "manifests" / f"forecast_date={DATE}.json").read_text())
    assert manifest["counts"]["forecast"] == SERIES and manifest["counts"]["rejected"] == 0

    # what was uploaded: the working dir without .venv (1.8 GB), out/, bench/work/ or .git
    info = get_json(f"{ray_head.dashboard}/api/jobs/{job_id}")
    uri = info["runtime_env"]["working_dir"]
    name = uri.rsplit("/", 1)[-1].removesuffix(".zip")
    unpacked = list(Path(ray_head.head.temp_dir).glob(f"session_*/runtime_resources/working_dir_files/{name}"))
    assert unpacked, f"no unpacked working dir {name} under {ray_head.head.temp_dir}"
    names = {p.name for p in unpacked[0].iterdir()}
    assert {"forecaster", "jobs", "pyproject.toml"} <= names, names
    assert not names & {".venv", "out", ".git"}, names
    # no file of bench/work (a developer's bench output): Ray may still create the ignored folder, empty
    assert not [p for p in (unpacked[0] / "bench" / "work").rglob("*") if p.is_file()]


def test_driver_endpoint_reaches_the_workers_of_a_running_cluster_credentials_do_not(ray_head, s3_server,
                                                                                      tmp_path):
    """`forecaster run` joins a Ray that was started with credentials (NODE_CREDENTIALS, as a node with an
    instance role has) but no S3 endpoint. The endpoint is only in the driver's environment: the job reads and
    writes S3 from Ray workers, so init_ray must hand AWS_ENDPOINT_URL to them (runtime_env env_vars). The
    driver's own secret key must not travel: not to the job's printed output, not into Ray's session files
    (runtime_env values are written to runtime_env_agent.log), not into the bucket.
    """
    import s3fs

    bucket = s3_server.bucket("driver-env")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    pq.write_table(seasonal_series(8, 36, freq="MS", seed=2), f"{bucket}/input/part-0.parquet", filesystem=fs)
    secret = f"secret-{uuid.uuid4().hex}"  # moto accepts any key pair; this one is easy to look for
    env = {**ray_env(), **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
           "AWS_SECRET_ACCESS_KEY": secret, "RAY_ADDRESS": ray_head.gcs}
    done = subprocess.run(
        [str(VENV_BIN / "forecaster"), "run", "--set", f"data.uri=s3://{bucket}/input", "--set", "data.freq=MS",
         "--set", f"model.horizon={HORIZON}", "--set", f"output.uri=s3://{bucket}/out", "--set", f"run.date={DATE}",
         "--set", "train.max_epochs=1", "--set", "model.hidden_size=8"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[:3000] + "\n...\n" + output[-5000:]
    passed = re.search(r"passing (.*) to Ray workers", output)
    assert passed and "AWS_ENDPOINT_URL" in passed.group(1), output[:3000]
    assert "AWS_SECRET_ACCESS_KEY" not in passed.group(1) and "AWS_ACCESS_KEY_ID" not in passed.group(1)
    forecasts = pq.read_table(f"{bucket}/out/forecasts/forecast_date={DATE}",
                              filesystem=s3fs.S3FileSystem(skip_instance_cache=True))
    assert forecasts.num_rows == 8 * HORIZON

    assert secret not in output
    leaked = [str(p) for p in Path(ray_head.head.temp_dir).rglob("*")
              if p.is_file() and not p.is_symlink() and secret.encode() in p.read_bytes()]
    assert leaked == [], leaked
    for key in s3_server.keys(bucket):
        body = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert secret.encode() not in body, key
