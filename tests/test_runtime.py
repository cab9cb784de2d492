"""forecaster.runtime resource settings that need no running Ray."""

from forecaster.config import load_config
from forecaster.runtime import predict_pool


def test_predict_pool_starts_every_actor_at_once():
    # With min_size=1 alone the pool grows late: the first actor accepts blocks two at a time.
    pool = predict_pool(load_config(None, ["predict.actors=3"]))
    assert (pool.min_size, pool.initial_size, pool.max_size) == (1, 3, 3)
