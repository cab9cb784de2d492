"""The job on a Ray cluster of three nodes on this machine: a head without CPUs and two worker nodes.

Each node is its own `ray start --block` (tests/raycluster.py: own temp dir, ports on 127.0.0.1, stopped by
process id). Input, checkpoints and output live on the local S3 (moto on loopback): the nodes share no disk
the job may rely on. The nodes' environment points them at that S3, as an instance role and endpoint would
on a real cluster (worker processes take their environment from their node, not from the driver).

What is proven: a job submitted with `ray job submit` (the real CLI, `--working-dir` the repository) runs
with this virtualenv's python, receives the working dir without .venv, out/, bench/work/ or .git (Ray honours
the working dir's .gitignore; .git is excluded with runtime_env `excludes`), merges its own runtime_env
env_vars with the job's (init_ray must not name them again: Ray refuses to merge two runtime_envs that share
a variable), runs its training ranks and predictor actors on the worker nodes and records where (`placement`
in the manifest); a worker node killed while training runs is survived with fewer ranks than the job asked
for (`train.min_workers`: training resumes from the last checkpoint with the one rank that the node left
holds, the manifest counts the restart, every series ends up forecast or rejected); a worker node killed
while the forecasts are predicted and written leaves the whole partition committed or none, never part of
one; a local output path on a cluster of several nodes stops the run before training with an error that
says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from forecaster.synthetic import seasonal_series
from tests.raycluster import ROOT, TERMINAL, VENV_BIN, cmdline, get_json, pids_naming, ray_env, running_cluster

pytestmark = pytest.mark.ray

s3fs = pytest.importorskip("s3fs")

HORIZON = 6
DATE = "2024-01-01"
JOB_TIMEOUT_S = 900  # CI's machine has been 2.4x slower than the one these ran on
# env_vars: a job that sets variables itself, as users pass credentials or logging settings
JOB_RUNTIME_ENV = {"excludes": [".git"], "env_vars": {"RAY_DEDUP_LOGS": "0", "AWS_DEFAULT_REGION": "us-east-1"}}


@pytest.fixture(scope="module")
def cluster(s3_server):
    with running_cluster(0, [2, 2], env={"AWS_ENDPOINT_URL": s3_server.endpoint}) as cluster:
        yield cluster


def _fs():
    return s3fs.S3FileSystem(skip_instance_cache=True)


def _upload(bucket: str, series: int, length: int) -> set[str]:
    """`series` monthly series in one Parquet file under s3://<bucket>/input; returns their ids."""
    frame = seasonal_series(series, length, freq="MS", seed=3, noise=0.05)
    pq.write_table(frame, f"{bucket}/input/part-0.parquet", filesystem=_fs())
    return set(frame["unique_id"].to_pylist())


def _submit(cluster, bucket: str, *overrides: str, env_vars: dict | None = None) -> str:
    job_id = f"forecaster-multinode-{uuid.uuid4().hex[:8]}"
    runtime_env = {**JOB_RUNTIME_ENV, "env_vars": {**JOB_RUNTIME_ENV["env_vars"], **(env_vars or {})}}
    settings = [f"data.uri=s3://{bucket}/input", "data.freq=MS", f"model.horizon={HORIZON}",
                f"output.uri=s3://{bucket}/out", f"run.date={DATE}", "model.hidden_size=16", *overrides]
    done = cluster.cli(
        "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id, "--working-dir", str(ROOT),
        "--runtime-env-json", json.dumps(runtime_env), "--no-wait",
        "--", "python", "-m", "jobs.nightly", *[a for kv in settings for a in ("--set", kv)])
    assert done.returncode == 0, done.stdout + done.stderr
    return job_id


def _finished(cluster, job_id: str) -> None:
    status = cluster.wait_for_job(job_id, JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"job {job_id} ended {status}:\n{cluster.job_logs(job_id)[-8000:]}"


def _manifest(bucket: str) -> dict:
    with _fs().open(f"{bucket}/out/manifests/forecast_date={DATE}.json") as fh:
        return json.load(fh)


def _forecast_ids(bucket: str) -> set[str]:
    table = pq.read_table(f"{bucket}/out/forecasts/forecast_date={DATE}", filesystem=_fs(), columns=["unique_id"])
    return set(table["unique_id"].to_pylist())


def _worker_node_ids(cluster) -> set[str]:
    nodes = cluster.alive_nodes()
    assert sum(bool(n["raylet"].get("isHeadNode")) for n in nodes) == 1, "no head among the nodes: cannot tell"
    return {n["raylet"]["nodeId"] for n in nodes if not n["raylet"].get("isHeadNode")}


@pytest.fixture(scope="module")
def submitted(cluster, s3_server):
    """A whole job submitted with `ray job submit` and finished: (bucket, input ids, job id). Its model is
    also the one the predict-loss test forecasts with (no Ray Train run of its own)."""
    bucket = s3_server.bucket("multinode")
    ids = _upload(bucket, series=24, length=48)
    # three batches of 8 series, so three predictor actors: more than the 2 CPUs of one worker node
    job_id = _submit(cluster, bucket, "train.max_epochs=2", "predict.batch_size=8")
    _finished(cluster, job_id)
    return bucket, ids, job_id


def test_a_submitted_job_runs_on_both_worker_nodes_and_says_where(cluster, s3_server, submitted):
    # which python a job runs: the venv's, found on the PATH the nodes were started with
    probe = cluster.cli("job", "submit", "--address", cluster.dashboard, "--",
                        "python", "-c", "import sys; print('JOB_PYTHON_PREFIX', sys.prefix)")
    prefix = re.search(r"JOB_PYTHON_PREFIX (\S+)", probe.stdout)
    assert probe.returncode == 0 and prefix, probe.stdout + probe.stderr
    assert Path(prefix.group(1)) == Path(sys.prefix)

    bucket, ids, job_id = submitted
    _check_uploaded_working_dir(cluster, job_id)

    manifest = _manifest(bucket)
    placement = manifest["placement"]
    train_nodes = {node for attempt in placement["train"] for node in attempt}
    used = train_nodes | set(placement["predict"])
    assert len(placement["train"]) == 1 and len(placement["train"][0]) == 2  # one attempt, two ranks
    assert used <= _worker_node_ids(cluster), "work placed on the head, which has no CPUs"
    assert len(used) >= 2, placement
    assert manifest["counts"]["forecast"] == 24 and manifest["counts"]["rejected"] == 0
    forecasts = pq.read_table(f"{bucket}/out/forecasts/forecast_date={DATE}", filesystem=_fs()).to_pandas()
    assert set(forecasts.unique_id) == ids and len(forecasts) == 24 * HORIZON
    assert not forecasts.duplicated(["unique_id", "ds"]).any()
    # the checkpoint went to the bucket, not to a disk of one node
    assert manifest["checkpoint_uri"].startswith(f"s3://{bucket}/out/checkpoints/"), (manifest["checkpoint_uri"],
                                                                                    s3_server.keys(bucket))
    assert _checkpoints(bucket)


def _check_uploaded_working_dir(cluster, job_id: str) -> None:
    """What the head (where the job's driver runs) unpacked: the working dir without .venv (1.8 GB), out/,
    bench/work/ or .git."""
    uri = get_json(f"{cluster.dashboard}/api/jobs/{job_id}")["runtime_env"]["working_dir"]
    name = uri.rsplit("/", 1)[-1].removesuffix(".zip")
    unpacked = list(Path(cluster.head.temp_dir).glob(f"session_*/runtime_resources/working_dir_files/{name}"))
    assert unpacked, f"no unpacked working dir {name} under {cluster.head.temp_dir}"
    names = {p.name for p in unpacked[0].iterdir()}
    assert {"forecaster", "jobs", "pyproject.toml"} <= names, names
    assert not names & {".venv", "out", ".git"}, names
    # no file of bench/work (a developer's bench output): Ray may still create the ignored folder, empty
    assert not [p for p in (unpacked[0] / "bench" / "work").rglob("*") if p.is_file()]


def _train_worker_pids() -> list[int]:
    return [pid for pid in pids_naming("RayTrainWorker") if cmdline(pid).startswith(b"ray::RayTrainWorker")]


def _checkpoints(bucket: str) -> list[str]:
    return [p for p in _fs().find(f"{bucket}/out/checkpoints") if p.endswith("model.pt")]


@contextlib.contextmanager
def _node_lost(cluster, victim, s3_server):
    """Kill `victim` (the whole node at once: raylet, object store, workers), then, whatever the test found,
    start a new worker node in its place so that later tests see three nodes."""
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    try:
        yield
    finally:
        cluster.workers.remove(victim)
        victim.stop()
        cluster.wait_for_nodes(2)  # the head sees the lost node dead before a new one joins
        cluster.add_worker(num_cpus=2, env={"AWS_ENDPOINT_URL": s3_server.endpoint})


def test_a_worker_node_lost_while_training_is_survived_by_fewer_ranks(cluster, s3_server):
    """Two ranks of 2 CPUs, one on each worker node; kill the node of one once a checkpoint exists. The
    node that is left holds one rank only, and train.min_workers=1 lets Ray Train's elastic scaling resume
    from the checkpoint with that one instead of waiting for a second. The lost node is started again
    afterwards so that later tests see three nodes.

    Ray Train's first restart still asks for two ranks (the head has not yet declared the node dead) and
    waits RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S for them, which counts as a second failure
    (train.max_failures=2); the test shortens that wait from 60 s to 30 s."""
    bucket = s3_server.bucket("nodeloss")
    ids = _upload(bucket, series=64, length=96)
    job_id = _submit(cluster, bucket, "train.max_epochs=8", "train.patience=8", "train.max_failures=2",
                     "train.windows_per_series=64", "train.cpus_per_worker=2", "train.min_workers=1",
                     env_vars={"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "30"})
    deadline = time.monotonic() + 240
    while not _checkpoints(bucket):
        assert cluster.job_status(job_id) not in ("SUCCEEDED", "FAILED", "STOPPED"), \
            f"ended before a checkpoint was seen:\n{cluster.job_logs(job_id)[-6000:]}"
        assert time.monotonic() < deadline, f"no checkpoint after 240 s:\n{cluster.job_logs(job_id)[-6000:]}"
        time.sleep(1)
    ranks = _train_worker_pids()
    victims = [node for node in cluster.workers if any(node.started(pid) for pid in ranks)]
    assert victims, f"no training rank found on a worker node ({len(ranks)} rank processes)"
    victim = victims[0]
    with _node_lost(cluster, victim, s3_server):
        _finished(cluster, job_id)

    manifest = _manifest(bucket)
    assert manifest["metrics"]["restarts"] >= 1
    attempts = manifest["placement"]["train"]
    # the first attempt on both worker nodes, the last on the one node that was left, with one rank
    assert len(attempts) >= 2 and len(set(attempts[0])) == 2 and len(attempts[-1]) == 1, attempts
    assert manifest["counts"]["forecast"] == 64 and manifest["counts"]["rejected"] == 0
    assert _forecast_ids(bucket) == ids


def test_a_worker_node_lost_while_predicting_leaves_the_whole_partition_or_none(cluster, s3_server, submitted):
    """Kill the node of a predictor actor as soon as one runs (3000 series in blocks of 64, so most are
    still to come): Ray Data retries the lost blocks on the node that is left and the job commits every
    series, or the job fails and commits no partition. Never a partial one. The job forecasts with the
    submitted job's model as it is (train.warm_epochs=0): what is tested starts after training."""
    bucket, series = s3_server.bucket("predictloss"), 3000
    ids = _upload(bucket, series=series, length=48)
    model = _manifest(submitted[0])["checkpoint_uri"]
    job_id = _submit(cluster, bucket, f"train.warm_start={model}", "train.warm_epochs=0", "predict.batch_size=64",
                     "report.enabled=false")
    deadline, victim = time.monotonic() + 300, None
    while victim is None:
        status = cluster.job_status(job_id)
        assert status not in TERMINAL, f"ended {status} before a predictor ran:\n{cluster.job_logs(job_id)[-6000:]}"
        assert time.monotonic() < deadline, f"no predictor after 300 s:\n{cluster.job_logs(job_id)[-6000:]}"
        predictors = [pid for pid in pids_naming("MapWorker") if cmdline(pid).startswith(b"ray::MapWorker")]
        victim = next((node for node in cluster.workers if any(node.started(pid) for pid in predictors)), None)
        time.sleep(0.05)
    with _node_lost(cluster, victim, s3_server):
        status = cluster.wait_for_job(job_id, JOB_TIMEOUT_S)

    partition = f"{bucket}/out/forecasts/forecast_date={DATE}"
    written = [p for p in _fs().find(partition) if p.endswith(".parquet")]
    if status == "SUCCEEDED":
        assert _forecast_ids(bucket) == ids
        assert sum(pq.read_metadata(p, filesystem=_fs()).num_rows for p in written) == series * HORIZON
        assert _manifest(bucket)["counts"]["forecast"] == series
    else:
        assert status == "FAILED" and written == [], (status, written)


def test_a_local_output_path_on_a_multi_node_cluster_stops_before_training(cluster, s3_server, tmp_path):
    bucket = s3_server.bucket("localout")
    _upload(bucket, series=4, length=36)
    env = {**ray_env(), "RAY_ADDRESS": cluster.gcs, "AWS_ENDPOINT_URL": s3_server.endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [str(VENV_BIN / "forecaster"), "run", "--set", f"data.uri=s3://{bucket}/input", "--set", "data.freq=MS",
         "--set", f"model.horizon={HORIZON}", "--set", f"output.uri={tmp_path / 'out'}", "--set", f"run.date={DATE}"],
        env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stdout + done.stderr[-4000:]
    assert "output.uri" in done.stderr and "3 nodes" in done.stderr and "ray.shared_local_paths" in done.stderr
    assert not (tmp_path / "out").exists()
