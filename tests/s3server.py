"""A local S3 for the tests: moto in server mode, as s3fs's own test suite runs it.

`s3_server` (session scope) starts `moto_server` on a free port of 127.0.0.1, points the AWS SDKs at it
with the AWS_* environment variables (botocore, hence s3fs, honours AWS_ENDPOINT_URL), and yields an
`S3Server` whose `bucket()` makes a fresh, empty bucket per test. Old environment values come back at
teardown. Ray workers take their environment when Ray starts: a test that writes to S3 from Ray tasks
must start (or restart) Ray after this fixture, or pass the variables in `runtime_env`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Unset while the server runs: a developer's profile, token or S3-only endpoint would win over ours.
CLEARED_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3")


@dataclass
class S3Server:
    endpoint: str
    buckets: list[str] = field(default_factory=list)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, prefix: str = "test") -> str:
        """Create a new empty bucket and return its name (use it as s3://<name>/...)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in the bucket (directory markers included), sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _moto_server_command() -> list[str]:
    exe = Path(sys.executable).parent / "moto_server"
    found = str(exe) if exe.exists() else shutil.which("moto_server")
    if found is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    return [found]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, endpoint: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(endpoint, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout:.0f} s")


def _forget_s3fs_instances() -> None:
    # fsspec caches filesystem instances (and their clients) per process: none may outlive the server.
    try:
        import s3fs
    except ImportError:
        return
    s3fs.S3FileSystem.clear_instance_cache()


@contextlib.contextmanager
def local_s3():
    """moto's S3 server on a free port of 127.0.0.1, with the AWS_* variables pointing at it while the
    block runs (the fixture below; bench/multinode.py uses it outside pytest)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*_moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {key: os.environ.get(key) for key in [*FAKE_ENV, *CLEARED_ENV, "AWS_ENDPOINT_URL"]}
    try:
        _wait_until_up(proc, endpoint)
        for key in CLEARED_ENV:
            os.environ.pop(key, None)
        os.environ.update(FAKE_ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        _forget_s3fs_instances()
        yield S3Server(endpoint)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _forget_s3fs_instances()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_server():
    with local_s3() as server:
        yield server
