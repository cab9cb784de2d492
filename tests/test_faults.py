"""Nothing lost: a training worker killed mid-run, crashes around the partition commit, flaky storage.

- a Ray Train worker that dies (test-only hook FORECASTER_TEST_KILL_RANK, forecaster.train._maybe_fail) is
  restarted from the last checkpoint and the job still forecasts every series;
- a crash between staging and commit, or in the middle of a commit, leaves the old partition complete
  (on object stores: in the manifest's file list) and the next run repairs what was left;
- storage calls that fail for a moment are retried with exponential backoff; errors that outlast the retries
  name the URI (forecaster.storage.retry; Ray Data retries its own file writes).

See docs/reliability.md.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from forecaster import commit, runtime, storage, write
from forecaster.commit import commit_partition, staging_dir
from forecaster.storage import (
    Location,
    StorageError,
    list_parquet_files,
    read_json,
    resolve,
    write_json,
)

DATE = "2024-03-01"
TABLE = "forecasts"
REJECTS_TABLE = "rejects"
NAME = f"forecast_date={DATE}"
SCHEMA = pa.schema([("y", pa.int64())])


class SimulatedKill(BaseException):
    """A crash that runs no `except Exception` clean-up, like a killed process."""


def _kill(*args, **kwargs):
    raise SimulatedKill


# ---------------------------------------------------------------- a filesystem that fails on request


class FlakyHandler(pafs.FileSystemHandler):
    """Wraps a pyarrow filesystem; the first `fail[method]` calls of a method raise `error(method)`.

    Counters are files in `counter_dir` (one byte per call), so Ray workers that got a pickled copy count
    against the same budget as the driver.
    """

    def __init__(self, inner: pafs.FileSystem, counter_dir: str, fail: dict[str, int], permanent: bool = False):
        self.inner, self.counter_dir, self.fail, self.permanent = inner, counter_dir, dict(fail), permanent

    @property
    def fs(self):  # storage.forget_listings clears fsspec's listing cache through fs.handler.fs
        return getattr(getattr(self.inner, "handler", None), "fs", None)

    def callers(self, method: str) -> list[int]:
        """The process id of each call, in order."""
        path = os.path.join(self.counter_dir, method)
        return [int(line) for line in open(path).read().split()] if os.path.exists(path) else []

    def calls(self, method: str) -> int:
        return len(self.callers(method))

    def _maybe_fail(self, method: str, path: str = "") -> None:
        if method not in self.fail:
            return
        with open(os.path.join(self.counter_dir, method), "a") as fh:
            fh.write(f"{os.getpid()}\n")
        if self.calls(method) <= self.fail[method]:
            if self.permanent:
                raise PermissionError(errno.EACCES, f"Access Denied (injected) {path}")
            raise OSError(errno.EBUSY, f"SlowDown: Please reduce your request rate (injected) {path}")

    def get_type_name(self):
        return "flaky+" + self.inner.type_name

    def normalize_path(self, path):
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        self._maybe_fail("get_file_info", str(paths))
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        self._maybe_fail("get_file_info_selector", selector.base_dir)
        return self.inner.get_file_info(selector)

    def create_dir(self, path, recursive):
        self._maybe_fail("create_dir", path)
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self._maybe_fail("delete_dir", path)
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self._maybe_fail("delete_file", path)
        self.inner.delete_file(path)

    def move(self, src, dest):
        self._maybe_fail("move", src)
        self.inner.move(src, dest)

    def copy_file(self, src, dest):
        self._maybe_fail("copy_file", src)
        self.inner.copy_file(src, dest)

    def open_input_stream(self, path):
        self._maybe_fail("open_input_stream", path)
        return self.inner.open_input_stream(path)

    def open_input_file(self, path):
        self._maybe_fail("open_input_file", path)
        return self.inner.open_input_file(path)

    def open_output_stream(self, path, metadata):
        self._maybe_fail("open_output_stream", path)
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.inner.open_append_stream(path, metadata=metadata)


def _flaky(loc: Location, tmp_path, fail: dict[str, int], permanent: bool = False) -> tuple[Location, FlakyHandler]:
    counters = tmp_path / "counters"
    counters.mkdir(exist_ok=True)
    handler = FlakyHandler(loc.fs, str(counters), fail, permanent)
    return Location(pafs.PyFileSystem(handler), loc.path, loc.uri), handler


@pytest.fixture
def sleeps(monkeypatch):
    """storage.retry's backoff, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(storage, "_sleep", recorded.append)
    return recorded


def _s3_root(server) -> Location:
    # explicit endpoint and keys: Ray workers that unpickle this filesystem reach the same server
    options = {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "us-east-1"}}
    return resolve(f"s3://{server.bucket('faults')}/out", options)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Location:
    if request.param == "local":
        return resolve(str(tmp_path / "out"))
    return _s3_root(request.getfixturevalue("s3_server"))


def _values(loc: Location) -> list[int]:
    """What a reader that lists the partition sees."""
    return sorted(v for f in list_parquet_files(loc) for v in pq.read_table(f, filesystem=loc.fs)["y"].to_pylist())


def _committed_values(root: Location) -> list[int]:
    """What a reader that follows the manifest's file list sees (strict reader on object stores)."""
    paths = write.committed_paths(root, TABLE, DATE)
    return sorted(pq.read_table(paths, filesystem=root.fs)["y"].to_pylist())


def _staging_files(root: Location) -> list[str]:
    selector = pafs.FileSelector(root.join(TABLE, "_staging").path, recursive=True, allow_not_found=True)
    storage.forget_listings(root.fs)
    return [i.path for i in root.fs.get_file_info(selector) if i.type == pafs.FileType.File
            and not i.path.endswith("/")]


# ---------------------------------------------------------------- retries (no Ray)


def test_transient_errors_are_retried_with_exponential_backoff(tmp_path, sleeps, caplog):
    loc, handler = _flaky(resolve(str(tmp_path / "out")), tmp_path, {"open_output_stream": 3})
    target = loc.join("manifests", "m.json")
    with caplog.at_level(logging.WARNING, logger="forecaster.storage"):
        write_json(target, {"a": 1})
    assert read_json(target) == {"a": 1}
    assert handler.calls("open_output_stream") == 4
    assert len(sleeps) == 3
    for delay, nominal in zip(sleeps, (0.5, 1.0, 2.0), strict=True):  # doubling, +-20 % jitter
        assert 0.8 * nominal <= delay <= 1.2 * nominal
    assert all(target.uri in r.getMessage() for r in caplog.records)
    assert "attempt 2 of 5" in caplog.records[0].getMessage()


def test_an_error_that_outlasts_the_retries_names_the_uri(tmp_path, sleeps):
    loc, handler = _flaky(resolve(str(tmp_path / "out")), tmp_path, {"open_input_stream": 99})
    target = loc.join("manifests", "m.json")
    write_json(target, {"a": 1})
    with pytest.raises(StorageError) as err:
        read_json(target)
    message = str(err.value)
    assert target.uri in message and "failed 5 times" in message and "reduce your request rate" in message
    assert handler.calls("open_input_stream") == storage.RETRY_ATTEMPTS == 5
    assert len(sleeps) == 4


def test_a_permanent_error_is_not_retried_and_names_the_uri(tmp_path, sleeps):
    loc, handler = _flaky(resolve(str(tmp_path / "out")), tmp_path, {"get_file_info_selector": 99}, permanent=True)
    (tmp_path / "out" / "d").mkdir(parents=True)
    with pytest.raises(StorageError, match=f"{loc.join('d').uri}: list failed: PermissionError"):
        list_parquet_files(loc.join("d"))
    assert handler.calls("get_file_info_selector") == 1 and sleeps == []


def test_errors_classified_transient_or_not():
    assert storage.is_transient(OSError(errno.EBUSY, "Please reduce your request rate."))
    assert storage.is_transient(OSError(121, "We encountered an internal error"))  # s3fs: 500 -> EREMOTEIO
    assert storage.is_transient(ConnectionResetError())
    assert storage.is_transient(TimeoutError())
    endpoint = type("EndpointConnectionError", (Exception,), {})  # botocore's, without botocore
    assert storage.is_transient(endpoint("Could not connect to the endpoint URL"))
    for permanent in (FileNotFoundError("x"), PermissionError("x"), OSError(errno.ENOSPC, "full"),
                      ValueError("bad"), StorageError("x"), KeyboardInterrupt()):
        assert not storage.is_transient(permanent), permanent


def test_commit_on_s3_retries_list_copy_and_delete(s3_server, tmp_path, sleeps):
    base = _s3_root(s3_server)
    table = base.join(TABLE)
    for values in ([1, 2], [3, 4, 5]):  # the second commit replaces the first
        staging = staging_dir(table, NAME)
        for i, v in enumerate(values):
            pq.write_table(pa.table({"y": [v]}), f"{staging.path}/v{values[0]}-{i}.parquet", filesystem=base.fs)
        if values[0] == 3:
            flaky, handler = _flaky(base, tmp_path, {"get_file_info_selector": 1, "copy_file": 2,
                                                     "delete_file": 1, "delete_dir": 1})
            staging = Location(flaky.fs, staging.path, staging.uri)
        commit_partition(staging, Location(staging.fs, table.join(NAME).path, table.join(NAME).uri))
    assert _values(table.join(NAME)) == [3, 4, 5]
    assert {m: handler.calls(m) for m in handler.fail} == {
        "get_file_info_selector": 3,  # staged files (failed once, retried), then the old partition
        "copy_file": 5, "delete_file": 4, "delete_dir": 2}  # 3 copies + 2 retries; 2 old files + marker, 1 retry
    # one retry each for the listing, the staging delete and a file delete; two for the first copy
    assert [round(s / 0.5) for s in sorted(sleeps)] == [1, 1, 1, 1, 2]
    assert not [k for k in s3_server.keys(base.path.split("/")[0]) if "_staging" in k and not k.endswith("/")]


# ---------------------------------------------------------------- writes through Ray Data


def _rows(values: list[int], blocks: int = 3):
    import ray

    chunks = [c for c in np.array_split(np.asarray(values, dtype=np.int64), blocks) if len(c)]
    return ray.data.from_arrow([pa.table({"y": c}, schema=SCHEMA) for c in chunks])


def _write_version(root: Location, values: list[int]) -> dict:
    """One run's output: the partition, then the manifest (the commit record)."""
    write.write_partition(root, TABLE, DATE, _rows(values), SCHEMA)
    manifest = {"values": values}
    write.write_manifest(root, DATE, manifest)
    return manifest


@pytest.mark.ray
def test_write_partition_records_the_committed_files_in_the_manifest(ray_session, root):
    manifest = _write_version(root, [1, 2, 3])
    final = write.partition(root, TABLE, DATE)
    assert manifest["files"][TABLE] == sorted(p[len(final.path) + 1:] for p in list_parquet_files(final))
    assert len(manifest["files"][TABLE]) == 3 and REJECTS_TABLE not in manifest["files"]
    assert read_json(write.manifest_location(root, DATE))["files"] == manifest["files"]
    assert _values(final) == _committed_values(root) == [1, 2, 3]
    _write_version(root, [4, 5])
    assert _values(final) == _committed_values(root) == [4, 5]
    assert _staging_files(root) == []


@pytest.mark.ray
def test_crash_between_staging_and_commit_keeps_the_old_partition(ray_session, root, monkeypatch):
    _write_version(root, [1, 2, 3])
    manifest_before = read_json(write.manifest_location(root, DATE))

    monkeypatch.setattr(write, "commit_partition", _kill)
    with pytest.raises(SimulatedKill):
        write.write_partition(root, TABLE, DATE, _rows([10, 11, 12, 13]), SCHEMA)
    final = write.partition(root, TABLE, DATE)
    assert _values(final) == _committed_values(root) == [1, 2, 3]  # old and complete, for every reader
    assert read_json(write.manifest_location(root, DATE)) == manifest_before
    assert len(_staging_files(root)) == 3  # the staged new files, hidden from readers by the leading "_"

    monkeypatch.undo()
    _write_version(root, [20, 21])  # the next run removes the stale staging directory, then commits
    assert _values(final) == _committed_values(root) == [20, 21]
    assert _staging_files(root) == []


@pytest.mark.ray
def test_local_commit_interrupted_after_the_old_partition_was_moved_aside(ray_session, tmp_path, monkeypatch):
    root = resolve(str(tmp_path / "out"))
    final = write.partition(root, TABLE, DATE)
    _write_version(root, [1, 2, 3])
    monkeypatch.setattr(commit, "_exchange", lambda a, b: False)  # the two-rename path (no RENAME_EXCHANGE)
    rename = commit._local_rename

    def failing(src, dst):  # the move of the new directory into place fails
        if f"/_staging/{NAME}-" in src:
            raise OSError(errno.EIO, "simulated I/O error")
        rename(src, dst)

    monkeypatch.setattr(commit, "_local_rename", failing)
    with pytest.raises(OSError, match="simulated"):
        write.write_partition(root, TABLE, DATE, _rows([7, 8]), SCHEMA)
    assert _values(final) == [1, 2, 3]  # rolled back: the old directory was renamed back
    assert not [p for p in os.listdir(tmp_path / "out" / TABLE / "_staging") if p.startswith("old-")]

    def killed(src, dst):  # the process dies between the two renames: no roll back either
        if f"/_staging/{NAME}-" in src or "/_staging/old-" in src:
            raise SimulatedKill
        rename(src, dst)

    monkeypatch.setattr(commit, "_local_rename", killed)
    with pytest.raises(SimulatedKill):
        write.write_partition(root, TABLE, DATE, _rows([7, 8]), SCHEMA)
    assert not os.path.exists(final.path)  # the date is missing (not half-written) until the next run
    aside = [p for p in os.listdir(tmp_path / "out" / TABLE / "_staging") if p.startswith(f"old-{NAME}-")]
    assert len(aside) == 1
    assert sorted(pq.read_table(tmp_path / "out" / TABLE / "_staging" / aside[0])["y"].to_pylist()) == [1, 2, 3]

    # the next run restores the old partition first, so it is back even if this run fails in turn
    monkeypatch.setattr(commit, "_local_rename", rename)
    monkeypatch.setattr(write, "commit_partition", _kill)
    with pytest.raises(SimulatedKill):
        write.write_partition(root, TABLE, DATE, _rows([7, 8]), SCHEMA)
    assert _values(final) == [1, 2, 3]
    monkeypatch.setattr(write, "commit_partition", commit_partition)
    _write_version(root, [30, 31])
    assert _values(final) == [30, 31]
    assert os.listdir(tmp_path / "out" / TABLE / "_staging") == []


@pytest.mark.ray
def test_s3_commit_killed_while_copying_keeps_the_old_partition_and_the_next_run_repairs(ray_session, s3_server,
                                                                                         monkeypatch):
    root = _s3_root(s3_server)
    final = write.partition(root, TABLE, DATE)
    _write_version(root, [1, 2, 3])
    copy = storage._FSSpecHandler.copy_file
    copies = []

    def killed_after_one_copy(self, src, dst):
        if copies:
            raise SimulatedKill
        copies.append(dst)
        copy(self, src, dst)

    monkeypatch.setattr(storage._FSSpecHandler, "copy_file", killed_after_one_copy)
    with pytest.raises(SimulatedKill):
        write.write_partition(root, TABLE, DATE, _rows([10, 11, 12]), SCHEMA)
    monkeypatch.undo()
    # the commit record still names the old files, all there: strict readers see the old partition complete
    assert _committed_values(root) == [1, 2, 3]
    # a reader that lists the prefix sees the uncommitted copy too (the documented window)
    assert len(_values(final)) == 4

    # the next run deletes what the record does not list and the stale staging files, then commits
    write.write_partition(root, TABLE, DATE, _rows([20, 21]), SCHEMA)
    assert _committed_values(root) == _values(final) == [20, 21]
    assert _staging_files(root) == []


@pytest.mark.ray
def test_s3_commit_killed_while_deleting_the_old_files_is_finished_by_the_next_run(ray_session, s3_server,
                                                                                    monkeypatch):
    root = _s3_root(s3_server)
    final = write.partition(root, TABLE, DATE)
    _write_version(root, [1, 2, 3])
    monkeypatch.setattr(storage._FSSpecHandler, "delete_file", _kill)  # after the record, before any delete
    with pytest.raises(SimulatedKill):
        write.write_partition(root, TABLE, DATE, _rows([10, 11]), SCHEMA)
    monkeypatch.undo()
    assert _committed_values(root) == [10, 11]  # committed: the record lists the new files
    assert _values(final) == [1, 2, 3, 10, 11]  # listing readers: the old files are still there

    def failing_commit(*args, **kwargs):
        raise OSError(errno.EIO, "simulated")

    monkeypatch.setattr(write, "commit_partition", failing_commit)
    with pytest.raises(OSError, match="simulated"):  # the next run fails too, after its recovery step
        write.write_partition(root, TABLE, DATE, _rows([30]), SCHEMA)
    assert _committed_values(root) == _values(final) == [10, 11]


@pytest.mark.ray
def test_s3_commit_error_midway_rolls_back_at_once(ray_session, s3_server, monkeypatch, sleeps):
    root = _s3_root(s3_server)
    final = write.partition(root, TABLE, DATE)
    _write_version(root, [1, 2, 3])
    copy = storage._FSSpecHandler.copy_file
    copies = []

    def fails_after_one_copy(self, src, dst):
        if copies:
            raise PermissionError(errno.EACCES, "Access Denied (injected)")
        copies.append(dst)
        copy(self, src, dst)

    monkeypatch.setattr(storage._FSSpecHandler, "copy_file", fails_after_one_copy)
    with pytest.raises(StorageError, match=re.escape(final.uri) + "/.*: copy the staged file failed: PermissionError"):
        write.write_partition(root, TABLE, DATE, _rows([10, 11, 12]), SCHEMA)
    monkeypatch.undo()
    assert _values(final) == _committed_values(root) == [1, 2, 3]  # the one copy was deleted again


@pytest.mark.ray
def test_ray_data_write_and_commit_on_flaky_s3(ray_session, s3_server, tmp_path, sleeps):
    """Failing requests during the staged write (in Ray workers) and the commit (driver) are retried."""
    import ray

    root, handler = _flaky(_s3_root(s3_server), tmp_path, {"open_output_stream": 2, "copy_file": 1,
                                                           "get_file_info_selector": 1})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # FlakyHandler, inside the workers
    try:
        write.write_partition(root, TABLE, DATE, _rows(list(range(12)), blocks=2), SCHEMA)
        write.write_manifest(root, DATE, {})
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert _values(write.partition(root, TABLE, DATE)) == list(range(12))
    # Ray Data retried the two failed file writes (its own backoff, in the workers) ...
    writers = handler.callers("open_output_stream")
    assert len(writers) >= 2 + 2  # 2 failures + 2 files (1 per block), then the driver's JSON files
    assert os.getpid() not in writers[:4]
    # ... storage.retry the failed listing and copy on the driver
    assert handler.calls("copy_file") == 2 + 1 and len(sleeps) >= 2


# ---------------------------------------------------------------- readers during commits (local)


def test_local_readers_see_one_complete_version_while_commits_swap(tmp_path, monkeypatch):
    if commit._renameat2() is None:
        pytest.skip("no renameat2 on this platform: commits use the two-rename fallback")
    table = resolve(str(tmp_path / "t"))
    final = table.join(NAME)
    versions = {v: [v * 10 + i for i in range(4)] for v in range(150)}

    def commit_version(v):
        staging = staging_dir(table, NAME)
        os.makedirs(staging.path)
        for i, value in enumerate(versions[v]):  # names unique per version, as Ray Data's are per write
            pq.write_table(pa.table({"y": [value]}), f"{staging.path}/v{v}-{i}.parquet")
        commit_partition(staging, final)

    commit_version(0)
    renames = []
    rename = commit._local_rename
    monkeypatch.setattr(commit, "_local_rename", lambda src, dst: (renames.append(src), rename(src, dst)))
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                read = pq.read_table(final.path)
            except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
                errors.append(exc)  # a file listed before a swap is gone after it: read again
                continue
            if read.num_columns == 0:  # listed the old directory as it was deleted: no file, read again
                errors.append("empty listing")
                continue
            seen.append(sorted(read["y"].to_pylist()))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for v in range(1, len(versions)):
            commit_version(v)
    finally:
        stop.set()
        thread.join()
    complete = {tuple(vals) for vals in versions.values()}
    assert len(seen) >= 20 and len({tuple(s) for s in seen}) >= 5, (len(seen), len(errors))
    assert all(tuple(s) in complete for s in seen), [s for s in seen if tuple(s) not in complete][:3]
    assert renames == []  # every commit was one RENAME_EXCHANGE: the date never went missing
    assert not [p for p in os.listdir(table.join("_staging").path)]


# ---------------------------------------------------------------- a worker killed during training


def test_fault_hook_variables_reach_workers_through_runtime_env():
    env = {"FORECASTER_TEST_KILL_RANK": "1:2:/tmp/m", "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "s"}
    assert runtime.fault_hook_env(env) == {"FORECASTER_TEST_KILL_RANK": "1:2:/tmp/m"}
    assert runtime.worker_env_vars(env)["FORECASTER_TEST_KILL_RANK"] == "1:2:/tmp/m"


@pytest.mark.ray
def test_training_survives_a_killed_worker(ray_session, tmp_path, monkeypatch):
    # the hook reaches the workers only through train.fit's RunConfig(worker_runtime_env=...)
    from forecaster.config import load_config
    from forecaster.pipeline import run
    from forecaster.synthetic import seasonal_series

    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    pq.write_table(seasonal_series(20, (36, 48), freq="MS", seed=5, noise=0.05), data / "part-0.parquet")
    marker = tmp_path / "killed.marker"
    # rank 1 exits once, at epoch 3: the second of the 3 refit epochs (train.refit_epochs) that follow the
    # 2 epochs of early stopping
    monkeypatch.setenv("FORECASTER_TEST_KILL_RANK", f"1:3:{marker}")
    # Ray Train's controller collects reports (and so registers checkpoints) when it polls the workers, every
    # 2 s by default: an epoch here is shorter, so without the job's 0.1 s (runtime.RAY_ENV) the crash can come
    # before any checkpoint was registered and the restart begins at epoch 0 (restarts would stay 0).
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    cfg = load_config(None, [
        f"data.uri={data}", "data.freq=MS", "model.horizon=6", f"output.uri={out}", f"run.date={DATE}",
        "train.max_epochs=2", "train.patience=10", "train.num_workers=2", "model.hidden_size=16",
        "train.max_failures=1", "train.windows_per_series=16", "train.batch_size=64", "run.name=kill",
        "train.refit_epochs=3",
    ])
    manifest = run(cfg)

    assert marker.exists()  # the worker really died
    metrics = manifest["metrics"]
    assert metrics["restarts"] >= 1
    # resumed inside the refit from the checkpoint of its first epoch: neither from epoch 0 nor from the
    # start of the refit (which would begin again at the best epoch's weights), and no epoch twice
    assert metrics["epochs"] == 5 and metrics["refit_epochs"] == 3
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2, 3, 4]
    assert [h["val_loss"] is None for h in metrics["history"]] == [False, False, True, True, True]
    # the moving average of the weights resumed too: it counts the steps of all 5 epochs (about 5 per
    # epoch: 2 ranks x 160 windows in batches of 32), not only the 2 after the restart
    import torch

    saved = torch.load(os.path.join(manifest["checkpoint_uri"].removeprefix("file://"), "model.pt"),
                       map_location="cpu", weights_only=True)
    assert int(saved["ema"]["n_averaged"]) >= 20
    assert saved["refit_done"] == 3
    on_disk = json.loads((out / "manifests" / f"forecast_date={DATE}.json").read_text())
    assert on_disk["metrics"]["restarts"] == manifest["metrics"]["restarts"]
    forecasts = pq.read_table(out / "forecasts" / NAME).to_pandas()
    assert len(forecasts) == 20 * 6 and not forecasts.duplicated(["unique_id", "ds"]).any()
    assert forecasts.groupby("unique_id").size().eq(6).all() and np.isfinite(forecasts.LSTM).all()
    rejects = pq.read_table(out / "rejects" / NAME).to_pandas()
    assert set(forecasts.unique_id) | set(rejects.unique_id) == {f"s{i:02d}" for i in range(20)}
    assert {k: manifest["counts"][k] for k in ("input", "forecast", "rejected")} == {
        "input": 20, "forecast": 20, "rejected": 0}
