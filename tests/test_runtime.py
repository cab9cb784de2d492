"""forecaster.runtime resource settings that need no running Ray."""

import ray

from forecaster.config import load_config
from forecaster.runtime import predict_actors, predict_pool


def test_predict_pool_starts_every_actor_at_once():
    # With min_size=1 alone the pool grows late: the first actor accepts blocks two at a time.
    pool = predict_pool(load_config(None, ["predict.actors=3"]))
    assert (pool.min_size, pool.initial_size, pool.max_size) == (1, 3, 3)


def test_the_default_pool_has_a_cpu_for_the_driver_and_no_more_actors_than_batches(monkeypatch):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    cfg = load_config(None, ["predict.batch_size=100"])
    assert predict_actors(cfg) == 7
    assert [predict_actors(cfg, n) for n in (0, 1, 100, 101, 250, 700, 10**6)] == [1, 1, 1, 2, 3, 7, 7]
    assert predict_pool(cfg, 250).max_size == 3
    # what the user set is what starts
    assert predict_actors(load_config(None, ["predict.actors=4", "predict.batch_size=100"]), 50) == 4
