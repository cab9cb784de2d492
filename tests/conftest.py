import os

import pytest

from forecaster.runtime import QUIET_ENV

for _key, _value in QUIET_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting one per test costs ~10 s each).

    3 logical CPUs on this 2-core machine: 2 training workers x 1 CPU plus one CPU that Ray Data
    always finds free (see forecaster/runtime.py).
    """
    import ray

    ray.init(num_cpus=3, configure_logging=False, runtime_env={"env_vars": dict(QUIET_ENV)})
    yield ray
    ray.shutdown()

from tests.s3server import s3_server  # noqa: E402, F401
