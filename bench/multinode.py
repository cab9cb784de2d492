"""The same nightly run on a cluster of three nodes and on one node: wall time of each.

    flock /tmp/ray.lock .venv/bin/python bench/multinode.py [--data examples/data/m1_monthly.parquet] [--set k=v]

Both runs are what a user does: `ray job submit` of `jobs.nightly` to a Ray started with `ray start`
(tests/raycluster.py: real raylets on loopback, each with its own temp dir and ports), input, checkpoints
and output on an S3 server on loopback (moto, tests/s3server.py), default config but `data.*`, the
horizon and the storage keys. The cluster is a head without CPUs and two worker nodes of 2 CPUs each, as in
tests/test_multinode.py; the one node is a head with the same 4 CPUs. On this 2-core machine every node
shares the same two cores, so the ratio shows what spreading the job over nodes costs (object transfers
between raylets, placement), not what more machines would gain.

Prints, per setup: the wall time from submission to SUCCEEDED, the job's own wall time and stages (its
manifest), the nodes the training ranks and predictors ran on, then the ratio.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402
import s3fs  # noqa: E402

from forecaster.manifest import stage_line  # noqa: E402
from tests.raycluster import running_cluster  # noqa: E402
from tests.s3server import local_s3  # noqa: E402

DATE = "2026-01-01"
JOB_TIMEOUT_S = 1800


def _run(cluster, bucket: str, settings: list[str]) -> tuple[float, dict]:
    """Submit the nightly job, wait for it; (seconds from submission to its end, its manifest)."""
    job_id = f"bench-multinode-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    done = cluster.cli("job", "submit", "--address", cluster.dashboard, "--submission-id", job_id, "--working-dir",
                       str(ROOT), "--runtime-env-json", json.dumps({"excludes": [".git", "bench/work", "out"]}),
                       "--no-wait", "--", "python", "-m", "jobs.nightly",
                       *[a for kv in settings for a in ("--set", kv)])
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    status = cluster.wait_for_job(job_id, JOB_TIMEOUT_S)
    seconds = time.perf_counter() - started
    if status != "SUCCEEDED":
        raise RuntimeError(f"job {job_id} ended {status}:\n{cluster.job_logs(job_id)[-6000:]}")
    with s3fs.S3FileSystem(skip_instance_cache=True).open(f"{bucket}/out/manifests/forecast_date={DATE}.json") as fh:
        return seconds, json.load(fh)


def _setup(name: str, head_cpus: int, workers: list[int], s3, data: pathlib.Path, overrides: list[str]) -> dict:
    with running_cluster(head_cpus, workers, env={"AWS_ENDPOINT_URL": s3.endpoint}) as cluster:
        bucket = s3.bucket(name)
        pq.write_table(pq.read_table(data), f"{bucket}/input/part-0.parquet",
                       filesystem=s3fs.S3FileSystem(skip_instance_cache=True))
        settings = [f"data.uri=s3://{bucket}/input", "data.freq=MS", "model.horizon=18",
                    f"output.uri=s3://{bucket}/out", f"run.date={DATE}", "report.enabled=false", *overrides]
        seconds, manifest = _run(cluster, bucket, settings)
        nodes = {n["raylet"]["nodeId"]: "head" if n["raylet"].get("isHeadNode") else f"worker {i}"
                 for i, n in enumerate(cluster.alive_nodes())}
    placement = manifest.get("placement") or {}
    train = sorted({nodes.get(n, "?") for attempt in placement.get("train", []) for n in attempt}, key=str)
    predict = sorted({nodes.get(n, "?") for n in placement.get("predict", [])}, key=str)
    print(f"\n{name}: submitted to SUCCEEDED in {seconds:.1f} s; the job's own wall time "
          f"{manifest['timings_s']['total']:.1f} s ({stage_line(manifest)})")
    print(f"  {manifest['counts']['forecast']} series forecast, {manifest['metrics'].get('epochs')} epochs; "
          f"training ranks on node(s) {train}, predictors on node(s) {predict}")
    return {"seconds": seconds, "manifest": manifest}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT / "examples" / "data" / "m1_monthly.parquet"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    data = pathlib.Path(args.data)
    with local_s3() as s3:
        three = _setup("three-nodes", 0, [2, 2], s3, data, args.overrides)
        one = _setup("one-node", 4, [], s3, data, args.overrides)
    print(f"\nthree nodes / one node: {three['seconds'] / one['seconds']:.2f} (submission to end), "
          f"{three['manifest']['timings_s']['total'] / one['manifest']['timings_s']['total']:.2f} (the job's own "
          "wall time)")


if __name__ == "__main__":
    main()
