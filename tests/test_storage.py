"""forecaster/storage.py on the local filesystem and on S3 (moto's server, see tests/s3server.py)."""

from __future__ import annotations

import os
import pickle

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from forecaster.commit import commit_partition, staging_dir
from forecaster.storage import (
    Location,
    StorageError,
    exists,
    list_parquet_files,
    read_json,
    resolve,
    write_json,
)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Location:
    """An empty output root, once on local disk and once in a fresh S3 bucket."""
    if request.param == "local":
        return resolve(str(tmp_path / "out"))
    server = request.getfixturevalue("s3_server")
    return resolve(f"s3://{server.bucket()}/out")


def _write(loc: Location, name: str, values: list[int]) -> None:
    pq.write_table(pa.table({"y": values}), f"{loc.path}/{name}", filesystem=loc.fs)


def _values(loc: Location) -> list[int]:
    return sorted(v for f in list_parquet_files(loc) for v in pq.read_table(f, filesystem=loc.fs)["y"].to_pylist())


def _staged(table: Location, date: str, values: list[int]) -> Location:
    staging = staging_dir(table, f"forecast_date={date}")
    staging.fs.create_dir(staging.path, recursive=True)
    _write(staging, "part-0.parquet", values[:1])
    if len(values) > 1:
        staging.fs.create_dir(f"{staging.path}/sub", recursive=True)
        _write(staging.join("sub"), "part-1.parquet", values[1:])
    return staging


def _partition(table: Location, date: str) -> Location:
    return table.join(f"forecast_date={date}")


# ---- resolve ----

def test_resolve_plain_path_is_absolute_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loc = resolve("out/demo")
    assert loc.is_local and isinstance(loc.fs, pafs.LocalFileSystem)
    assert loc.path == str(tmp_path / "out" / "demo")
    assert loc.uri == "out/demo"
    assert loc.join("forecasts").uri == "out/demo/forecasts"
    assert loc.join("forecasts").path == os.path.join(loc.path, "forecasts")


def test_resolve_file_url(tmp_path):
    loc = resolve(f"file://{tmp_path}/out/")
    assert loc.is_local
    assert loc.path == str(tmp_path / "out")
    assert loc.join("a", "b").uri == f"file://{tmp_path}/out/a/b"


def test_resolve_s3_url(s3_server):
    bucket = s3_server.bucket()
    loc = resolve(f"s3://{bucket}/some/prefix/")
    assert not loc.is_local
    assert loc.path == f"{bucket}/some/prefix"
    assert loc.uri == f"s3://{bucket}/some/prefix/"
    assert loc.join("x.json").uri == f"s3://{bucket}/some/prefix/x.json"
    import s3fs

    assert isinstance(loc.fs.handler.fs, s3fs.S3FileSystem)
    # The endpoint comes from AWS_ENDPOINT_URL (botocore reads it): the write lands on the moto server.
    write_json(loc.join("x.json"), {"a": 1})
    assert s3_server.keys(bucket) == ["some/prefix/x.json"]


def test_resolve_gs_url_picks_gcsfs_offline():
    gcsfs = pytest.importorskip("gcsfs")
    # token="anon": without it gcsfs looks for Google credentials (and may ask a metadata server).
    loc = resolve("gs://bucket/x", {"token": "anon"})
    assert isinstance(loc.fs, pafs.PyFileSystem)
    assert isinstance(loc.fs.handler.fs, gcsfs.GCSFileSystem)
    assert loc.path == "bucket/x"
    assert loc.uri == "gs://bucket/x"


def test_resolve_unknown_scheme_names_the_uri():
    with pytest.raises(StorageError, match=r"nosuchfs://bucket/x: no filesystem for scheme 'nosuchfs'"):
        resolve("nosuchfs://bucket/x")


# ---- list_parquet_files ----

def test_list_parquet_files_skips_hidden_and_underscore_entries(root):
    data = root.join("data")
    for sub in ("ds=2024-01-01", "ds=2024-01-02/part=a", "_staging/x", ".hidden"):
        root.fs.create_dir(f"{data.path}/{sub}", recursive=True)
    _write(data.join("ds=2024-01-01"), "part-0.parquet", [1])
    _write(data.join("ds=2024-01-02", "part=a"), "part-0.parquet", [2])
    _write(data.join("_staging", "x"), "part-0.parquet", [99])
    _write(data.join(".hidden"), "part-0.parquet", [99])
    _write(data, "_SUCCESS", [99])
    _write(data, ".part-9.parquet.crc", [99])
    _write(data, "part-top.parquet", [3])

    files = list_parquet_files(data)
    assert [f[len(data.path) + 1:] for f in files] == [
        "ds=2024-01-01/part-0.parquet",
        "ds=2024-01-02/part=a/part-0.parquet",
        "part-top.parquet",
    ]
    assert _values(data) == [1, 2, 3]


def test_list_parquet_files_single_file(root):
    root.fs.create_dir(root.path, recursive=True)
    _write(root, "one.parquet", [7])
    assert list_parquet_files(root.join("one.parquet")) == [root.join("one.parquet").path]


def test_list_parquet_files_missing_names_the_uri(root):
    missing = root.join("nope")
    with pytest.raises(StorageError, match=f"{missing.uri}: no such file or directory"):
        list_parquet_files(missing)


def test_list_parquet_files_ignores_s3_directory_markers(s3_server):
    bucket = s3_server.bucket()
    client = s3_server.client()
    for key in ("data/", "data/ds=1/", "data/ds=2/"):  # "folders" made by the S3 console or other tools
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    data = resolve(f"s3://{bucket}/data")
    _write(data.join("ds=1"), "part-0.parquet", [1])
    assert list_parquet_files(data) == [f"{bucket}/data/ds=1/part-0.parquet"]


def test_list_parquet_files_sees_files_written_by_another_process(s3_server):
    bucket = s3_server.bucket()
    data = resolve(f"s3://{bucket}/data")
    _write(data.join("ds=1"), "part-0.parquet", [1])
    assert len(list_parquet_files(data)) == 1
    data.fs.get_file_info(pafs.FileSelector(data.path))  # s3fs now holds a listing of data/ in its cache
    s3_server.client().put_object(Bucket=bucket, Key="data/ds=2/part-0.parquet", Body=b"PAR1")
    assert len(list_parquet_files(data.join("ds=2"))) == 1
    assert len(list_parquet_files(data)) == 2


# ---- directories, pickling ----

def test_empty_directory_can_be_created_and_deleted(root):
    # Ray Data's write_parquet does this for an empty dataset; on S3 the directory never exists.
    empty = root.join("forecasts", "_staging", "empty")
    root.fs.create_dir(empty.path, recursive=True)
    root.fs.delete_dir(empty.path)
    assert not exists(empty)


def test_filesystem_survives_pickling(root):
    # Ray ships the filesystem to its workers by pickling it.
    write_json(root.join("a.json"), {"a": 1})
    clone = Location(pickle.loads(pickle.dumps(root.fs)), root.path, root.uri)
    assert read_json(clone.join("a.json")) == {"a": 1}


# ---- JSON ----

def test_json_round_trip(root):
    loc = root.join("manifests", "forecast_date=2024-01-01.json")
    payload = {"counts": {"input": 3}, "date": "2024-01-01", "values": [1.5, None]}
    write_json(loc, payload)
    assert read_json(loc) == payload
    write_json(loc, {"replaced": True})
    assert read_json(loc) == {"replaced": True}
    # Only the manifest: no temporary file is left next to it.
    names = [i.base_name for i in root.fs.get_file_info(pafs.FileSelector(root.join("manifests").path))]
    assert names == ["forecast_date=2024-01-01.json"]


# ---- commit_partition ----

def test_commit_partition_replaces_one_date_only(root):
    table = root.join("forecasts")
    staging = _staged(table, "2024-01-01", [1, 2])
    commit_partition(staging, _partition(table, "2024-01-01"))
    assert not exists(staging)
    commit_partition(_staged(table, "2024-01-02", [3, 4]), _partition(table, "2024-01-02"))
    assert _values(_partition(table, "2024-01-01")) == [1, 2]
    assert _values(_partition(table, "2024-01-02")) == [3, 4]

    commit_partition(_staged(table, "2024-01-02", [5]), _partition(table, "2024-01-02"))

    assert _values(_partition(table, "2024-01-02")) == [5]  # the old sub/part-1.parquet is gone too
    assert _values(_partition(table, "2024-01-01")) == [1, 2]  # the sibling date is untouched
    assert [f[len(table.path) + 1:] for f in list_parquet_files(table)] == [
        "forecast_date=2024-01-01/part-0.parquet",
        "forecast_date=2024-01-01/sub/part-1.parquet",
        "forecast_date=2024-01-02/part-0.parquet",
    ]
    # Nothing is left under _staging/ but (on local disk) the empty directory itself.
    leftovers = table.fs.get_file_info(pafs.FileSelector(table.join("_staging").path, allow_not_found=True))
    assert [i.path for i in leftovers if i.type == pafs.FileType.File] == []
    assert [i for i in leftovers if i.type == pafs.FileType.Directory] == []


def _parquet_bytes(values: list[int]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"y": values}), sink)
    return sink.getvalue().to_pybytes()


def test_commit_partition_on_s3_with_stale_listing_and_markers(s3_server):
    """Other processes (Ray's write tasks, another run) wrote the staging files and a new version of the
    partition after the driver's s3fs cached a listing, and the bucket has empty "dir/" marker keys:
    the commit must still replace the partition, not add to it."""
    bucket = s3_server.bucket()
    client = s3_server.client()
    table = resolve(f"s3://{bucket}/out/forecasts")
    commit_partition(_staged(table, "2024-01-01", [1]), _partition(table, "2024-01-01"))
    table.fs.get_file_info(pafs.FileSelector(table.path))  # s3fs caches: forecasts/ holds only 2024-01-01
    final = "out/forecasts/forecast_date=2024-01-02/"
    client.put_object(Bucket=bucket, Key=final, Body=b"")
    client.put_object(Bucket=bucket, Key=final + "old.parquet", Body=_parquet_bytes([8, 9]))
    staging = staging_dir(table, "forecast_date=2024-01-02")
    staged = staging.path.split("/", 1)[1] + "/"
    for key, body in ((staged, b""), (staged + "part-0.parquet", _parquet_bytes([5])),
                      (staged + "sub/part-1.parquet", _parquet_bytes([6]))):
        client.put_object(Bucket=bucket, Key=key, Body=body)

    commit_partition(staging, _partition(table, "2024-01-02"))

    assert _values(_partition(table, "2024-01-02")) == [5, 6]
    assert _values(_partition(table, "2024-01-01")) == [1]
    assert [k for k in s3_server.keys(bucket) if k.startswith(final)] == [
        final + "part-0.parquet",
        final + "sub/part-1.parquet",
    ]
    assert [k for k in s3_server.keys(bucket) if k.endswith(".parquet") and "_staging" in k] == []


def test_commit_partition_over_an_empty_s3_directory_marker(s3_server):
    bucket = s3_server.bucket()
    s3_server.client().put_object(Bucket=bucket, Key="t/forecast_date=2024-01-01/", Body=b"")
    table = resolve(f"s3://{bucket}/t")
    commit_partition(_staged(table, "2024-01-01", [4]), _partition(table, "2024-01-01"))
    assert _values(_partition(table, "2024-01-01")) == [4]
    assert s3_server.keys(bucket) == ["t/forecast_date=2024-01-01/part-0.parquet"]
