"""Ray start-up and the resource settings that keep training and Ray Data from starving each other.

On a small machine (2 cores here) Ray must be told its CPUs explicitly. The rules:
- a local Ray gets `num_cpus = max(cpu_count, train CPUs + 1)`: one logical CPU more than the
  training workers take, so Ray Data's read and map tasks always find a slot. (2 workers x 1 CPU
  on a 2-CPU Ray with a streaming input hangs silently: no CPU is left for the read tasks.)
- the series dataset is materialised before training, so the training loop reads from the object
  store and the input pipeline never competes with the workers during `fit`;
- each training worker runs `torch.set_num_threads(cpus_per_worker)`: two 2-thread workers on two
  cores oversubscribe OpenMP and slow each other down;
- Ray Data stages are capped at `ray.data_cpus` CPUs (default: the cluster's CPUs) through
  `DataContext.execution_options.resource_limits`.
"""

from __future__ import annotations

import logging
import math
import os

import ray

from forecaster.config import Config

log = logging.getLogger(__name__)

QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_DEDUP_LOGS": "0",
}


def local_cpus(cfg: Config) -> int:
    if cfg.ray.num_cpus is not None:
        return cfg.ray.num_cpus
    train_cpus = math.ceil(cfg.train.num_workers * cfg.train.cpus_per_worker)
    return max(os.cpu_count() or 1, train_cpus + 1)


def init_ray(cfg: Config) -> None:
    """Join the cluster named by ray.address / RAY_ADDRESS, or start a local Ray sized for the job."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if not ray.is_initialized():
        address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
        runtime_env = {"env_vars": {k: os.environ[k] for k in QUIET_ENV}}
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        else:
            ray.init(num_cpus=local_cpus(cfg), runtime_env=runtime_env, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    data_cpus = cfg.ray.data_cpus or ray.cluster_resources().get("CPU", 1)
    ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(cpu=data_cpus)


def predict_actors(cfg: Config) -> int:
    """Prediction actors: one per CPU of the cluster less one for the driver-side work; on GPUs,
    at most one per GPU the cluster has now (prediction never scales the cluster up by itself)."""
    if cfg.predict.actors is not None:
        return cfg.predict.actors
    if cfg.train.use_gpu:
        return max(1, int(ray.cluster_resources().get("GPU", 1)))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, cpus - 1)
