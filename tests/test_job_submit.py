"""`forecaster run` joining a running Ray head whose nodes lack the S3 endpoint the driver has.

The head is this virtualenv's `ray start --head --block` (tests/raycluster.py: every port explicit and free, a
private --temp-dir, stopped by process id; the authentication setting is explained there). `ray job submit`
itself (the venv's python on the job's PATH, the working dir upload, a job's own runtime_env env_vars) is
tested on the three-node cluster of tests/test_multinode.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from forecaster.synthetic import seasonal_series
from tests.raycluster import VENV_BIN, ray_env, start_head

pytestmark = pytest.mark.ray

HORIZON = 6
DATE = "2024-01-01"
JOB_TIMEOUT_S = 360


@pytest.fixture(scope="module")
def ray_head():
    head = start_head(num_cpus=3)
    try:
        yield head
    finally:
        head.stop()


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
         "--set", "train.max_epochs=1", "--set", "train.refit_epochs=0", "--set", "train.num_workers=1",
         "--set", "model.hidden_size=8"],
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
