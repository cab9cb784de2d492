"""`ray job submit` against a real local Ray head, as the nightly job runs on a cluster.

The head is started with this virtualenv's `ray start --head --block` (so `python` on the job's PATH is the
venv's python, checked below), every port explicit and free, a private --temp-dir (the machine may run other
Ray instances: nothing here may touch them), and the job is submitted with the real CLI:

    ray job submit --address http://127.0.0.1:<dashboard port> --working-dir <repo> --no-wait -- python -m jobs.nightly

Authentication (checked against the installed Ray 2.60 source, ray/_private/authentication/): `ray start --head`
with RAY_AUTH_MODE unset turns token authentication on by itself when a token file exists (~/.ray/auth_token,
which any earlier `ray.init()` that started a local Ray writes: `enable_token_auth_by_default`), while the
`ray job submit` client only sends the token when its own RAY_AUTH_MODE is `token` (`is_token_auth_enabled`
reads the variable), so an unset mode on both sides fails with HTTP 401. The mode must be the same on the head
and the client: here both get RAY_AUTH_MODE=disabled (the head listens on 127.0.0.1 only). The pytest process
itself may have RAY_AUTH_MODE=token by then (ray.init() sets it in os.environ), so the subprocess environment
is built explicitly.

Working dir upload: Ray honours .gitignore (and .rayignore) of the working dir unless
RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 (ray/_private/runtime_env/packaging.py), so .venv/, out/ and bench/work/ stay
behind; .git is excluded with runtime_env `excludes`. The test checks what was unpacked on the node. The job
also sets env_vars of its own (as a job that passes credentials does): forecaster.runtime.init_ray must not
repeat them, or Ray refuses to merge the two runtime_envs and the job fails at ray.init.

Teardown never runs `ray stop`: it stops every Ray process on the machine by name (ray/scripts/scripts.py,
`stop`), other people's included. The head is stopped by SIGTERM to the `ray start --block` process, which
shuts down the processes it started; whatever is left in its process group, or still names the private
temp dir on its command line, is then killed by pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from forecaster.synthetic import seasonal_series

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
HORIZON = 6
SERIES = 12
DATE = "2024-01-01"
JOB_TIMEOUT_S = 360
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# env_vars: a job that sets variables itself, as users pass credentials or logging settings; init_ray must not
# name them again in its own runtime_env (Ray refuses to merge two runtime_envs that share a variable name).
JOB_RUNTIME_ENV = {"excludes": [".git"], "env_vars": {"RAY_DEDUP_LOGS": "0", "AWS_DEFAULT_REGION": "us-east-1"}}
PORT_FLAGS = ("port", "dashboard-port", "object-manager-port", "node-manager-port", "ray-client-server-port",
              "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
              "metrics-export-port")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):  # all open at once: n different ports
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray_env() -> dict[str, str]:
    """Environment for the head and the CLI: the venv first on PATH, auth disabled on both sides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_JOB", "AWS_", "RAY_AUTH_TOKEN"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        "RAY_DEDUP_LOGS": "0",
        "PYTHONUNBUFFERED": "1",
        # `ray start --block` on SIGTERM first drains the node for up to 30 s (Ray 2.60 default): not here
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    })
    env.pop("VIRTUAL_ENV", None)
    return env


# The head's own credentials, standing in for a node identity (instance role): the head gets no endpoint.
NODE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read().decode())


class Head:
    def __init__(self, proc: subprocess.Popen, temp_dir: str, dashboard: str, log: Path, gcs: str = ""):
        self.proc, self.temp_dir, self.dashboard, self.log, self.gcs = proc, temp_dir, dashboard, log, gcs

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env=_ray_env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def job_status(self, job_id: str) -> str:
        return _get_json(f"{self.dashboard}/api/jobs/{job_id}")["status"]

    def job_logs(self, job_id: str) -> str:
        done = self.cli("job", "logs", "--address", self.dashboard, job_id)
        return done.stdout + done.stderr


def _wait_for_dashboard(head: Head, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.proc.returncode}:\n{head.log.read_text()[-5000:]}")
        try:
            _get_json(f"{head.dashboard}/api/version")
            _get_json(f"{head.dashboard}/api/jobs/")  # the job API is up, not only the HTTP server
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            time.sleep(1)
    raise RuntimeError(f"dashboard {head.dashboard} not up after {timeout:.0f} s:\n{head.log.read_text()[-5000:]}")


def _stop(head: Head) -> None:
    """Stop only this head: SIGTERM to `ray start --block`, then its process group and stragglers by pid."""
    if head.proc.poll() is None:
        head.proc.send_signal(signal.SIGTERM)
        try:
            head.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.proc.kill()
            head.proc.wait()
    try:
        os.killpg(head.proc.pid, signal.SIGKILL)  # the group this test created (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in _pids_naming(head.temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _pids_naming(text: str) -> list[int]:
    """Processes whose command line contains `text` (read from /proc: psutil is only vendored inside Ray)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    # short path: Ray's unix sockets live under it (108-byte limit)
    log = tmp_path_factory.mktemp("head") / "ray-start.log"
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
    temp_dir = tempfile.mkdtemp(prefix="rayjs-", dir="/tmp")
    command = [str(RAY), "start", "--head", "--block", "--num-cpus=3", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
               "--disable-usage-stats", *[f"--{flag}={port}" for flag, port in ports.items()]]
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(command, env={**_ray_env(), **NODE_CREDENTIALS}, cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    head = Head(proc, temp_dir, f"http://127.0.0.1:{ports['dashboard-port']}", log, f"127.0.0.1:{ports['port']}")
    try:
        _wait_for_dashboard(head)
        yield head
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


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
    deadline, status = time.monotonic() + JOB_TIMEOUT_S, None
    while time.monotonic() < deadline:
        status = ray_head.job_status(job_id)
        if status in TERMINAL:
            break
        time.sleep(3)
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
    info = _get_json(f"{ray_head.dashboard}/api/jobs/{job_id}")
    uri = info["runtime_env"]["working_dir"]
    name = uri.rsplit("/", 1)[-1].removesuffix(".zip")
    unpacked = list(Path(ray_head.temp_dir).glob(f"session_*/runtime_resources/working_dir_files/{name}"))
    assert unpacked, f"no unpacked working dir {name} under {ray_head.temp_dir}"
    names = {p.name for p in unpacked[0].iterdir()}
    assert {"forecaster", "jobs", "pyproject.toml"} <= names, names
    assert not names & {".venv", "out", ".git"}, names
    assert not (unpacked[0] / "bench" / "work").exists()


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
    env = {**_ray_env(), **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
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
    leaked = [str(p) for p in Path(ray_head.temp_dir).rglob("*")
              if p.is_file() and not p.is_symlink() and secret.encode() in p.read_bytes()]
    assert leaked == [], leaked
    for key in s3_server.keys(bucket):
        body = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert secret.encode() not in body, key
