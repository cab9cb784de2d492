import os
import shutil
import sys
from pathlib import Path

import pytest

from forecaster.runtime import RAY_ENV, worker_env_vars

for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)


def _moto_server_installed() -> bool:
    return (Path(sys.executable).parent / "moto_server").exists() or shutil.which("moto_server") is not None


@pytest.fixture(scope="session")
def ray_session(request):
    """One local Ray for the whole test session (starting one per test costs ~10 s each).

    3 logical CPUs on this 2-core machine: 2 training workers x 1 CPU plus one CPU that Ray Data
    always finds free (see forecaster/runtime.py).

    Starts after `s3_server`: Ray workers inherit the environment of the raylet, which is this process's
    environment when ray.init() starts Ray, so the AWS_* variables that point s3fs at the local S3 must be
    set before; they also go into runtime_env like forecaster.runtime.init_ray passes them. Without moto
    installed the S3 server is skipped, not the Ray tests.
    """
    if _moto_server_installed():
        request.getfixturevalue("s3_server")
    import ray

    # address="local": a Ray of its own, never a cluster (or its stale address file) found on the machine
    ray.init(address="local", num_cpus=3, configure_logging=False, runtime_env={"env_vars": worker_env_vars()})
    yield ray
    ray.shutdown()

from tests.s3server import s3_server  # noqa: E402, F401


def pytest_collection_modifyitems(items):
    """A test on the session's Ray is a `ray` test whether or not it says so: `make test-fast` leaves
    out every test marked `ray` or `slow`."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
