"""Faults: bad inputs, a killed worker, reruns, completeness and secrets, in one run with a summary.

    flock /tmp/ray.lock .venv/bin/python bench/faults.py [--series 20] [--epochs 4] [--keep DIR]

1. bad inputs: a catalogue of bad series (validate.validate_batch), bad files (read.check_schema) and
   bad configs (config.load_config), each checked against the outcome docs/bad-inputs.md documents;
2. kills survived: the job with rank 1 killed at epoch 2 (FORECASTER_TEST_KILL_RANK) finishes, resumed
   from a checkpoint (metrics.restarts), with every series forecast;
3. reruns: the same date again on the same output (resumes the finished Ray Train run: the forecasts must
   be identical), and two fresh runs with the same seed (whether DDP training itself is reproducible);
4. nothing lost: for every run, forecasts and rejects are disjoint and together are the input series,
   with `horizon` rows per forecast series;
5. nobody let in: fake credentials in the environment and in data.storage_options appear in no file the
   runs wrote, and in no file of the Ray session directory;
6. with --multinode, nodes lost (tests/raycluster.py: a head without CPUs and two 2-CPU worker nodes on
   loopback, storage on a loopback S3, the job through `ray job submit`): the node of a training rank
   killed once a checkpoint exists (the job must resume and forecast every series), and a worker node
   killed while the forecasts are predicted and written (the job must either commit the whole partition
   or fail without one: never a partial partition).

Starts one local Ray; run it under `flock /tmp/ray.lock` where others share the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import os
import pathlib
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecaster.config import ConfigError, load_config  # noqa: E402
from forecaster.read import DataError, check_schema, rows_to_series  # noqa: E402
from forecaster.synthetic import seasonal_series  # noqa: E402
from forecaster.validate import validate_batch  # noqa: E402

HORIZON = 6
DATE = "2024-06-01"
SECRET_ENV = "FAKE-SECRET-bench-env-31c7"
SECRET_OPT = "FAKE-SECRET-bench-opt-9e02"
RENAME = {"unique_id": "unique_id", "ds": "ds", "y": "y"}


# ---------------------------------------------------------------- 1. bad inputs


def _long(uid, ds, y, id_type=pa.string()) -> pa.Table:
    ds = pd.DatetimeIndex(ds)
    return pa.table({"unique_id": pa.array([uid] * len(ds), type=id_type), "ds": pa.array(ds.as_unit("us")),
                     "y": pa.array(np.asarray(y, dtype=object), type=pa.float64())})


def _months(n, start="2020-01-01"):
    return pd.date_range(start, periods=n, freq="MS")


def _with(values, **at):
    y = list(np.arange(1.0, len(values) + 1.0)) if values is None else list(values)
    for i, v in at.items():
        y[int(i[1:])] = v
    return y


def series_cases() -> list[tuple[str, pa.Table, str | None]]:
    """(input, one series as long rows, documented reason or None = handled as plain data); horizon 3."""
    ten = np.arange(1.0, 11.0)
    berlin = pd.date_range("2020-01-01", periods=8, freq="MS", tz="Europe/Berlin")
    utc = pd.date_range("2020-01-01", periods=8, freq="MS", tz="UTC")
    return [
        ("clean monthly series", _long("a", _months(10), ten), None),
        ("unique_id null", _long(None, _months(10), ten), "null_id"),
        ('unique_id ""', _long("", _months(10), ten), "null_id"),
        ("y has NaN", _long("a", _months(10), _with(ten, i6=np.nan)), "non_finite_y"),
        ("y has +inf", _long("a", _months(10), _with(ten, i6=np.inf)), "non_finite_y"),
        ("y has -inf", _long("a", _months(10), _with(ten, i6=-np.inf)), "non_finite_y"),
        ("y has null", _long("a", _months(10), _with(ten, i6=None)), "non_finite_y"),
        ("y = 1e39 (beyond float32)", _long("a", _months(10), _with(ten, i3=1e39)), "overflow_y"),
        ("y = float32 max", _long("a", _months(10), _with(ten, i3=float(np.finfo(np.float32).max))), None),
        ("same ds twice", _long("a", list(_months(9)) + [_months(1)[0]], ten), "duplicate_ds"),
        ("one month missing", _long("a", _months(11).delete(5), ten), "irregular_timestamps"),
        ("first point off the grid (15th)", _long("a", [pd.Timestamp("2019-12-15")] + list(_months(9)), ten),
         "irregular_timestamps"),
        ("month-end data with MS", _long("a", pd.date_range("2020-01-31", periods=10, freq="ME"), ten),
         "irregular_timestamps"),
        ("points after run.date", _long("a", _months(10, "2029-06-01"), ten), "after_run_date"),
        ("timestamps in year 9999 (beyond pandas' range)", pa.table({
            "unique_id": ["a"] * 10, "y": ten,
            "ds": pa.array(np.arange("9998-12", "9999-10", dtype="datetime64[M]").astype("datetime64[us]"))}),
         "after_run_date"),
        ("1 point", _long("a", _months(1), [1.0]), "too_short"),
        ("horizon + 1 points", _long("a", _months(4), np.arange(4.0)), "too_short"),
        ("horizon + 2 points", _long("a", _months(5), np.arange(5.0)), None),
        ("too short and NaN", _long("a", _months(3), [1.0, np.nan, 2.0]), "non_finite_y"),
        ("constant series", _long("a", _months(10), [7.0] * 10), None),
        ("tiny and huge values", _long("a", _months(10), [1e-300, -1e30, 1e30] * 3 + [0.0]), None),
        ("id like a path ../x", _long("../x", _months(10), ten), None),
        ("500-character id", _long("x" * 500, _months(10), ten), None),
        ("non-ASCII id", _long("Köln-日本", _months(10), ten), None),
        ("id 'NULL' as text", _long("NULL", _months(10), ten), None),
        ("integer ids", _long(7, _months(10), ten, id_type=pa.int64()), None),
        ("ds tz-aware UTC", pa.table({"unique_id": ["a"] * 8, "ds": pa.array(utc), "y": np.arange(8.0)}), None),
        ("ds Europe/Berlin monthly (known gap)",
         pa.table({"unique_id": ["a"] * 8, "ds": pa.array(berlin), "y": np.arange(8.0)}), "irregular_timestamps"),
    ]


def check_series() -> tuple[int, list[str]]:
    failures = []
    cases = series_cases()
    for name, table, expected in cases:
        try:
            series = rows_to_series(table, rename=RENAME)
            out = validate_batch(series, "MS", 3, "2030-01-01", short_series="reject")
            got = out["reject_reason"].to_pylist()
            if got != [expected]:
                failures.append(f"series: {name}: expected {expected}, got {got}")
        except Exception as exc:  # a crash is never the documented outcome
            failures.append(f"series: {name}: raised {type(exc).__name__}: {exc}")
    # all of them in one block: each series judged on its own
    together = validate_batch(pa.concat_tables([rows_to_series(t, rename=RENAME) for _, t, _ in cases]),
                              "MS", 3, "2030-01-01", short_series="reject")
    expected_good = sum(1 for _, _, e in cases if e is None)
    if together["reject_reason"].null_count != expected_good:
        failures.append(f"series: one block of all cases: {together['reject_reason'].null_count} clean, "
                        f"expected {expected_good}")
    return len(cases) + 1, failures


def _table(n=6, **columns) -> pa.Table:
    base = {"unique_id": pa.array(["a"] * n, pa.string()), "ds": pa.array(_months(n).as_unit("us")),
            "y": pa.array(np.arange(float(n)), pa.float64())}
    base.update(columns)
    return pa.table({k: v for k, v in base.items() if v is not None})


def check_files(work: pathlib.Path) -> tuple[int, list[str]]:
    """(input, build the data.uri, words the DataError must contain or None = passes)."""

    def write(rel, table):
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return path

    def text(rel, content):
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    def duplicated():
        table = pa.Table.from_arrays([pa.array(["a"]), pa.array(_months(1).as_unit("us")), pa.array([1.0]),
                                      pa.array([2.0])], names=["unique_id", "ds", "y", "y"])
        return write("dup/x.parquet", table)

    def hive():
        write("hive/region=r0/part-0.parquet", _table())
        write("hive/region=r1/part-0.parquet", _table())
        text("hive/_SUCCESS", "")
        text("hive/region=r0/.part-0.parquet.crc", "crc")
        write("hive/_staging/old.parquet", _table(y=None))
        return work / "hive"

    cases = [
        ("data.uri does not exist", lambda: work / "nope", ["data.uri", "nope"]),
        ("directory without Parquet files", lambda: (work / "empty").mkdir() or work / "empty", ["data.uri"]),
        ("text file named x.parquet", lambda: text("t/x.parquet", "hello"), ["x.parquet", "not a readable"]),
        ("empty file named x.parquet", lambda: text("e/x.parquet", ""), ["x.parquet"]),
        ("README.txt next to the data", lambda: (write("r/a.parquet", _table()), text("r/README.txt", "hi"))[0].parent,
         ["README.txt"]),
        ("column y missing", lambda: write("m/x.parquet", _table(y=None)), ["x.parquet", "'y'", "data.target_col"]),
        ("y as string", lambda: write("s/x.parquet", _table(y=pa.array(["1"] * 6))), ["data.target_col", "string"]),
        ("ds as int64", lambda: write("i/x.parquet", _table(ds=pa.array(range(6)))), ["data.time_col", "int64"]),
        ("id as float", lambda: write("f/x.parquet", _table(unique_id=pa.array([1.5] * 6))), ["data.id_col"]),
        ("same column twice", duplicated, ["'y'", "2 times"]),
        ("extra columns", lambda: write("x/x.parquet", _table(extra=pa.array(range(6)))), None),
        ("no rows, right schema", lambda: write("z/x.parquet", _table(0)), None),
        ("integer ids, date32 ds, int y", lambda: write("c/x.parquet", _table(
            unique_id=pa.array([1] * 6), ds=pa.array(_months(6).date, pa.date32()), y=pa.array(range(6)))), None),
        ("Hive dir with _SUCCESS, .crc, _staging/", hive, None),
    ]
    failures = []
    for name, build, words in cases:
        uri = build()
        try:
            check_schema(load_config(None, [f"data.uri={uri}"]))
            if words is not None:
                failures.append(f"files: {name}: passed, expected DataError naming {words}")
        except DataError as exc:
            if words is None or not all(w in str(exc) for w in words):
                failures.append(f"files: {name}: DataError {exc!s} (expected {words})")
        except Exception as exc:
            failures.append(f"files: {name}: raised {type(exc).__name__}: {exc}")
    return len(cases), failures


def check_configs() -> tuple[int, list[str]]:
    """(--set items, words the ConfigError must contain, or None = accepted)."""
    cases = [
        (["model.horizn=6"], ["model.horizn", "model.horizon"]),
        (["modle.horizon=6"], ["modle", "'model'"]),
        (["model.horizon=0"], ["model.horizon"]),
        (["model.horizon=-1"], ["model.horizon"]),
        (["model.horizon=abc"], ["model.horizon"]),
        (["model.horizon=6.5"], ["model.horizon"]),
        (["model.horizon"], ["model.horizon"]),
        (["data.freq=XYZ"], ["data.freq"]),
        (["data.freq=H"], ["data.freq"]),
        (["model.dropout=1.5"], ["model.dropout"]),
        (["train.learning_rate=.nan"], ["train.learning_rate"]),
        (["train.max_failures=-1"], ["train.max_failures"]),
        (["run.date=2020-13-01"], ["run.date"]),
        (["run.date=20200101"], ["run.date"]),
        (["data.uri="], ["data.uri"]),
        (["data.target_col=ds"], ["data.target_col"]),
        (["model.loss=huber"], ["model.loss"]),
        (["model=3"], ["model"]),
        (["data.storage_options=hunter2-secret"], ["data.storage_options"]),
        (["run.date=2020-01-01", "data.target_col=no", "data.id_col=010"], None),
        (["data.storage_options.key=k", "data.storage_options.secret=s"], None),
    ]
    failures = []
    for items, words in cases:
        try:
            cfg = load_config(None, items)
            if words is not None:
                failures.append(f"config: {items}: accepted, expected ConfigError naming {words}")
            elif "data.target_col=no" in items and (cfg.data.target_col, cfg.data.id_col) != ("no", "010"):
                failures.append(f"config: {items}: text keys not kept as written")
        except ConfigError as exc:
            message = str(exc)
            if words is None or not all(w in message for w in words):
                failures.append(f"config: {items}: ConfigError {message!r} (expected {words})")
            if "hunter2" in message:
                failures.append(f"config: {items}: the storage_options value is echoed in the error")
    return len(cases), failures


# ---------------------------------------------------------------- 2-5. runs


def write_input(data: pathlib.Path, n_series: int) -> set[str]:
    """n_series good monthly series (2 files) and 3 bad ones (NaN, duplicate ds, after run.date)."""
    good = seasonal_series(n_series, (36, 60), freq="MS", seed=4, noise=0.05).to_pandas()
    months = pd.date_range("2019-01-01", periods=40, freq="MS")
    bad = pd.DataFrame({
        "unique_id": ["nan_series"] * 40 + ["dup_series"] * 40 + ["future_series"] * 40,
        "ds": list(months) + list(months[:39]) + [months[0]] + list(pd.date_range("2022-01-01", periods=40,
                                                                                 freq="MS")),
        "y": [1.0] * 10 + [np.nan] + [1.0] * 29 + [2.0] * 40 + [3.0] * 40,
    })
    bad["ds"] = bad["ds"].astype(good["ds"].dtype)
    frame = pd.concat([good, bad], ignore_index=True)
    ids = sorted(frame.unique_id.unique())
    data.mkdir(parents=True)
    for i in range(2):
        part = frame[frame.unique_id.isin(ids[i::2])]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), data / f"part-{i}.parquet")
    return set(ids)


def run_job(data, out, args, extra=()) -> tuple[dict, float]:
    from forecaster.pipeline import run

    cfg = load_config(None, [
        f"data.uri={data}", "data.freq=MS", f"model.horizon={HORIZON}", f"output.uri={out}", f"run.date={DATE}",
        f"train.max_epochs={args.epochs}", "train.patience=10", "train.num_workers=2", "model.hidden_size=16",
        "train.windows_per_series=16", "train.batch_size=64", "train.seed=7", "train.max_failures=1",
        f"data.storage_options.secret={SECRET_OPT}", *extra,
    ])
    started = time.perf_counter()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):  # per-epoch progress lines of this process
        manifest = run(cfg)
    return manifest, time.perf_counter() - started


def read_partition(out: pathlib.Path, table: str) -> pd.DataFrame:
    return pq.read_table(out / table / f"forecast_date={DATE}").to_pandas()


def sorted_forecasts(out: pathlib.Path) -> pd.DataFrame:
    return read_partition(out, "forecasts").sort_values(["unique_id", "ds"]).reset_index(drop=True)


def digest(frame: pd.DataFrame) -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="none")
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]


def nothing_lost(out: pathlib.Path, inputs: set[str]) -> list[str]:
    forecasts, rejects = read_partition(out, "forecasts"), read_partition(out, "rejects")
    problems = []
    f_ids, r_ids = set(forecasts.unique_id), set(rejects.unique_id)
    if f_ids & r_ids:
        problems.append(f"{len(f_ids & r_ids)} series both forecast and rejected")
    if f_ids | r_ids != inputs:
        problems.append(f"missing {sorted(inputs - f_ids - r_ids)[:5]}, unknown {sorted((f_ids | r_ids) - inputs)[:5]}")
    sizes = forecasts.groupby("unique_id").size()
    if not sizes.eq(HORIZON).all():
        problems.append(f"{int((sizes != HORIZON).sum())} series without {HORIZON} forecast rows")
    if forecasts.duplicated(["unique_id", "ds"]).any():
        problems.append("duplicate forecast rows")
    return problems


def scan_for_secrets(roots: list[pathlib.Path]) -> tuple[int, list[str]]:
    secrets = [SECRET_ENV.encode(), SECRET_OPT.encode()]
    scanned, found = 0, []
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                blob = path.read_bytes()
            except OSError:
                continue
            scanned += 1
            if any(s in blob for s in secrets):
                found.append(str(path))
    return scanned, found


def check_multinode() -> tuple[int, int, list[str]]:
    """(cases survived, cases, one line per case) of the node-loss cases (section 6 of the docstring)."""
    import json
    import signal
    import uuid

    import s3fs

    from tests.raycluster import cmdline, pids_naming, running_cluster
    from tests.s3server import local_s3

    date, details, survived = "2024-01-01", [], 0

    def files(fs, prefix: str) -> list[str]:
        return fs.find(prefix) if fs.exists(prefix) else []

    with local_s3() as s3, running_cluster(0, [2, 2], env={"AWS_ENDPOINT_URL": s3.endpoint}) as cluster:
        env = {"AWS_ENDPOINT_URL": s3.endpoint}
        # (stage, its Ray process, the first file that says it runs (None: the process is enough), series,
        # settings); the predictors start with the predict + write stage, before its first block
        cases = (("training", "RayTrainWorker", ("checkpoints", "model.pt"), 64,
                  ["train.max_failures=2", "train.max_epochs=8", "train.patience=8"]),
                 ("predict + write", "MapWorker", None, 3000, ["train.max_epochs=1", "predict.batch_size=64"]))
        for name, process, watched, series, extra in cases:
            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            bucket = s3.bucket("faults")
            table = seasonal_series(series, 96, freq="MS", seed=3, noise=0.05)
            pq.write_table(table, f"{bucket}/input/part-0.parquet", filesystem=fs)
            settings = [f"data.uri=s3://{bucket}/input", "data.freq=MS", f"model.horizon={HORIZON}",
                        f"output.uri=s3://{bucket}/out", f"run.date={date}", "model.hidden_size=16",
                        "report.enabled=false", *extra]
            job_id = f"faults-{uuid.uuid4().hex[:8]}"
            done = cluster.cli("job", "submit", "--address", cluster.dashboard, "--submission-id", job_id,
                               "--working-dir", str(ROOT), "--runtime-env-json",
                               json.dumps({"excludes": [".git", "bench/work", "out"]}), "--no-wait", "--",
                               "python", "-m", "jobs.nightly", *[a for kv in settings for a in ("--set", kv)])
            if done.returncode != 0:
                details.append(f"{name}: NOT SUBMITTED {done.stderr[-300:]}")
                continue
            deadline, victim = time.monotonic() + 600, None
            while victim is None and time.monotonic() < deadline:  # the moment: the stage's first file
                if cluster.job_status(job_id) in ("SUCCEEDED", "FAILED", "STOPPED"):
                    break
                if watched is None or any(f.endswith(watched[1]) for f in files(fs, f"{bucket}/out/{watched[0]}")):
                    pids = [p for p in pids_naming(process) if cmdline(p).startswith(f"ray::{process}".encode())]
                    hosts = [node for node in cluster.workers if any(node.started(pid) for pid in pids)]
                    victim = hosts[0] if hosts else None
                time.sleep(0.05 if watched is None else 0.2)
            if victim is None:
                details.append(f"{name}: NOT TRIED (the job ended or no {process} found before the kill)")
                continue
            os.killpg(victim.proc.pid, signal.SIGKILL)  # the whole node: raylet, object store, workers
            victim.proc.wait()
            status = cluster.wait_for_job(job_id, 900)
            cluster.workers.remove(victim)
            victim.stop()
            cluster.wait_for_nodes(2)
            cluster.add_worker(num_cpus=2, env=env)
            partition = f"{bucket}/out/forecasts/forecast_date={date}"
            written = [f for f in files(fs, partition) if f.endswith(".parquet")]
            ids = set(pq.read_table(written, filesystem=fs, columns=["unique_id"])["unique_id"].to_pylist()) \
                if written else set()
            rows = sum(pq.read_metadata(f, filesystem=fs).num_rows for f in written)
            complete = ids == set(table["unique_id"].to_pylist()) and rows == series * HORIZON
            good = (status == "SUCCEEDED" and complete) or (status == "FAILED" and not written)
            survived += good
            restarts = ""
            if status == "SUCCEEDED":
                with fs.open(f"{bucket}/out/manifests/forecast_date={date}.json") as fh:
                    restarts = f", restarts {json.load(fh)['metrics'].get('restarts')}"
            details.append(f"a worker node lost during {name}: job {status}{restarts}, forecasts partition "
                           f"{'complete' if complete else 'absent' if not written else 'PARTIAL'} "
                           f"({len(ids)}/{series} series, {rows} rows): {'ok' if good else 'NOT OK'}")
    return survived, len(cases), details


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--keep", help="write the runs here and keep them (default: a temporary directory)")
    parser.add_argument("--inputs-only", action="store_true", help="only the bad-input catalogue (no Ray)")
    parser.add_argument("--multinode", action="store_true", help="also the node-loss cases on a 3-node cluster")
    args = parser.parse_args()
    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="forecaster-faults-"))
    lines = [f"forecaster fault bench, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{os.cpu_count()} CPUs, {args.series} good + 3 bad series, horizon {HORIZON}, {args.epochs} epochs"]
    ok = True

    # 1. bad inputs (no Ray)
    (work / "bad-files").mkdir(parents=True, exist_ok=True)
    for label, (tried, failures) in (("series values (validate_batch)", check_series()),
                                     ("files and columns (check_schema)", check_files(work / "bad-files")),
                                     ("config (load_config)", check_configs())):
        lines.append(f"bad inputs, {label:34s} {tried - len(failures):3d}/{tried} handled as documented")
        lines.extend(f"    MISMATCH {f}" for f in failures)
        ok &= not failures

    if args.inputs_only:
        print("\n".join(lines))
        return 0 if ok else 1

    # 2-5. runs through one local Ray (the fault hook must be in the environment before Ray starts)
    data = work / "input"
    inputs = write_input(data, args.series)
    marker = work / "killed.marker"
    os.environ["FORECASTER_TEST_KILL_RANK"] = f"1:2:{marker}"
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.1"  # register checkpoints before the kill (tests/test_faults)
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_ENV
    runs, first_digest, session = {}, None, None
    try:
        runs["kill"] = run_job(data, work / "a", args)
        first_digest = digest(sorted_forecasts(work / "a"))
        runs["rerun"] = run_job(data, work / "a", args)
        runs["fresh1"] = run_job(data, work / "b", args)
        runs["fresh2"] = run_job(data, work / "c", args)
    except Exception:
        traceback.print_exc()
        ok = False
    finally:
        import ray

        session = pathlib.Path(ray._private.worker._global_node.get_session_dir_path()) if ray.is_initialized() \
            else None
        ray.shutdown()

    if "kill" in runs:
        manifest, seconds = runs["kill"]
        restarts = manifest["metrics"].get("restarts", 0)
        complete = manifest["counts"]["forecast"] == args.series
        survived = marker.exists() and restarts >= 1 and complete
        lines.append(f"kills survived: {int(survived)}/1 (rank 1 killed at epoch 2: marker {marker.exists()}, "
                     f"restarts {restarts}, epochs {manifest['metrics'].get('epochs')}, "
                     f"{manifest['counts']['forecast']}/{args.series} series forecast, {seconds:.0f} s)")
        ok &= survived
    if "rerun" in runs:
        manifest, seconds = runs["rerun"]
        again = digest(sorted_forecasts(work / "a"))
        verdict = "byte-identical" if again == first_digest else "DIFFERENT"
        lines.append(f"rerun of the same date on the same output (resumes the finished Ray Train run, "
                     f"{seconds:.0f} s): sorted forecast rows {verdict} (sha256 {first_digest} / {again})")
        ok &= again == first_digest
    if {"fresh1", "fresh2"} <= runs.keys():
        one, two = sorted_forecasts(work / "b"), sorted_forecasts(work / "c")
        numeric = [c for c in one.columns if pd.api.types.is_float_dtype(one[c])]
        diff = float(np.nanmax(np.abs(one[numeric].to_numpy() - two[numeric].to_numpy()))) if numeric else 0.0
        verdict = "byte-identical" if digest(one) == digest(two) else "differ"
        lines.append(f"two fresh runs, same seed: sorted forecast rows {verdict} (max abs diff {diff:.3g}; "
                     f"keys and row count equal: "
                     f"{one[['unique_id', 'ds']].equals(two[['unique_id', 'ds']])})")
    if "fresh1" in runs and first_digest is not None:
        killed, fresh = sorted_forecasts(work / "a"), sorted_forecasts(work / "b")  # a: rerun == killed run
        gap = float(np.nanmax(np.abs(killed["forecast"].to_numpy() - fresh["forecast"].to_numpy())))
        same = first_digest == digest(fresh)
        lines.append(f"killed-and-resumed run vs fresh run, same seed: sorted forecast rows "
                     f"{'byte-identical' if same else 'differ'} (max abs diff of `forecast` {gap:.3g})")
    for name, out in (("kill", "a"), ("fresh1", "b"), ("fresh2", "c")):
        if name in runs:
            problems = nothing_lost(work / out, inputs)
            rejects = read_partition(work / out, "rejects")
            lines.append(f"nothing lost, run {name:6s}: forecasts + rejects = {len(inputs)} input series: "
                         f"{'yes' if not problems else 'NO: ' + '; '.join(problems)} "
                         f"(rejects: {dict(sorted(Counter(rejects.reason).items()))})")
            ok &= not problems
    scanned, found = scan_for_secrets([work / "a", work / "b", work / "c"] + ([session] if session else []))
    lines.append(f"nobody let in: fake secrets (env AWS_SECRET_ACCESS_KEY, data.storage_options.secret) found in "
                 f"{len(found)} of {scanned} files (outputs, checkpoints, Ray session dir)")
    lines.extend(f"    FOUND in {f}" for f in found[:10])
    ok &= not found
    if args.multinode:
        survived, cases, details = check_multinode()
        lines.append(f"multi-node faults survived: {survived}/{cases}")
        lines.extend(f"    {d}" for d in details)
        ok &= survived == cases
    print("\n".join(line for line in lines if line))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
