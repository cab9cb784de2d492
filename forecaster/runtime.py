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
  `DataContext.execution_options.resource_limits`;
- the predictor actors (one CPU and one torch thread each) all start before the first block
  (`predict_pool`), instead of Ray Data growing the pool from one actor;
- a local Ray keeps no idle worker processes (`ray.idle_workers`, `local_system_config`).
- Ray's own console lines follow `ray.log_level` (forecaster.console): the level reaches the workers
  through runtime_env env_vars and `worker_process_setup_hook` (`setup_hook`).

Storage credentials and endpoints: Ray Data and Ray Train open s3:// and gs:// paths inside Ray workers,
which build their own fsspec clients from their own environment. A worker's environment is that of the
raylet that started it, not the driver's: on a cluster (or a local Ray started earlier by `ray start`)
the AWS_* variables of the driver are unknown to the workers. `worker_env_vars()` passes the driver's
AWS_* settings (region, AWS_ENDPOINT_URL for S3-compatible stores, CA bundle ...) and gcsfs's
STORAGE_EMULATOR_HOST through `runtime_env["env_vars"]`, names only in the log. Credentials
(SECRET_ENV_NAMES) are never passed: Ray keeps runtime_env values in plain text (GCS, dashboard, the
nodes' runtime_env_agent.log). A local Ray's workers inherit them from the driver anyway; cluster nodes
need their own (instance role, workload identity, or the node's environment).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os

import ray

from forecaster.config import Config, ConfigError
from forecaster.console import quiet_ray, quiet_ray_worker, ray_log_env, verbose
from forecaster.storage import resolve

log = logging.getLogger(__name__)

# Ray settings of every run (a variable the user set keeps the user's value): quiet logs, and Ray Train's
# controller polling its workers every 0.1 s instead of 2 s. A worker's `ray.train.report` blocks until the
# controller has taken the previous report (Ray Train 2.60 keeps one per worker, collected at a poll), so
# every epoch waited up to a poll interval, and the run waited a poll after its last epoch. A poll is one
# small RPC per worker. Ray Train passes the driver's RAY_TRAIN_* variables on to its controller.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}


# Storage environment that workers need to reach the same object store as the driver.
STORAGE_ENV_PREFIXES = ("AWS_",)
STORAGE_ENV_NAMES = ("STORAGE_EMULATOR_HOST",)
# Never forwarded: Ray writes runtime_env values in plain text to its session logs. Workers of a
# local Ray inherit the driver's environment anyway; cluster nodes use their own provider chain
# (instance role, profile).
SECRET_ENV_NAMES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")
# Workers of a local Ray: Ray Train's PreemptionWatcher polls the GCS for nodes being drained (spot
# preemption), which one machine never is; started, it also logs an `E core_worker.cc` line about its
# constructor arguments (forecaster.console).
LOCAL_WORKER_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
# Test-only fault hooks (forecaster.train._maybe_fail reads FORECASTER_TEST_KILL_RANK inside the workers).
TEST_ENV_PREFIX = "FORECASTER_TEST_"
# Set by Ray's job supervisor in the driver of a submitted job: the job's own runtime_env.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def storage_env(environ=None) -> dict[str, str]:
    """The driver's AWS_* / storage endpoint variables that are set (non-empty), credentials excluded."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items()
            if v and (k.startswith(STORAGE_ENV_PREFIXES) or k in STORAGE_ENV_NAMES) and k not in SECRET_ENV_NAMES}


def _job_runtime_env(environ) -> dict:
    """The submitted job's runtime_env (empty outside `ray job submit`)."""
    try:
        runtime_env = json.loads(environ.get(JOB_CONFIG_ENV) or "{}").get("runtime_env") or {}
        return runtime_env if isinstance(runtime_env, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _job_env_var_names(environ) -> set[str]:
    """Env var names the submitted job's runtime_env sets already (empty outside `ray job submit`)."""
    try:
        return set((_job_runtime_env(environ).get("env_vars") or {}).keys())
    except AttributeError:
        return set()


def fault_hook_env(environ=None) -> dict[str, str]:
    """The driver's FORECASTER_TEST_* variables (test-only fault hooks) that are set.

    Workers started after ray.init() only see them through a runtime_env: ray.init's (here, via
    `worker_env_vars`) or Ray Train's RunConfig(worker_runtime_env=...) when Ray runs already.
    """
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if v and k.startswith(TEST_ENV_PREFIX)}


def worker_env_vars(environ=None) -> dict[str, str]:
    """runtime_env["env_vars"] for ray.init: quiet-logging settings plus the storage environment.

    Inside `ray job submit` the job's runtime_env is merged with this one and Ray refuses the merge if
    both name the same variable (even with the same value): names the job sets already are left out,
    the workers get them from the job.
    """
    environ = os.environ if environ is None else environ
    wanted = {k: environ[k] for k in RAY_ENV if k in environ}
    wanted.update(storage_env(environ))
    wanted.update(fault_hook_env(environ))
    taken = _job_env_var_names(environ)
    return {k: v for k, v in wanted.items() if k not in taken}


def local_cpus(cfg: Config) -> int:
    if cfg.ray.num_cpus is not None:
        return cfg.ray.num_cpus
    train_cpus = math.ceil(cfg.train.num_workers * cfg.train.cpus_per_worker)
    return max(os.cpu_count() or 1, train_cpus + 1)


# Ray Train's PlacementGroupCleaner polls the controller through the state API, which lives in the
# dashboard: without one it logs a warning every few seconds for the whole of training.
CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_placement_group_cleaner() -> None:
    """The cleaner's warnings only. Nothing is lost: a local Ray ends with the job, and its placement
    groups with it."""
    logging.getLogger(CLEANER_LOGGER).setLevel(logging.ERROR)


def setup_local_worker() -> None:
    """`worker_process_setup_hook` of a local Ray without dashboard: Ray's console lines at the job's
    ray.log_level (forecaster.console), no placement-group cleaner warnings, and RAY_ADDRESS.

    Ray's state API in a worker (the cleaner's) finds its cluster by RAY_ADDRESS, else by looking for
    running GCS processes: with a second local Ray on the machine (a test session's, another job's) the
    cleaner's thread died with `ConnectionError: Found multiple active Ray instances` and its traceback."""
    quiet_ray_worker()
    quiet_placement_group_cleaner()
    with contextlib.suppress(Exception):  # a hook that raises ends the worker process
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def setup_hook(cfg: Config, local: bool, environ=None) -> str | None:
    """The worker_process_setup_hook for ray.init: none where the submitted job names its own."""
    if "worker_process_setup_hook" in _job_runtime_env(os.environ if environ is None else environ):
        return None
    if local and not cfg.ray.dashboard:
        return f"{__name__}.setup_local_worker"
    return f"{quiet_ray_worker.__module__}.{quiet_ray_worker.__name__}"


def local_system_config(cfg: Config) -> dict:
    """Raylet settings of a local Ray: keep `ray.idle_workers` idle worker processes (Ray's default
    keeps one per CPU), so that a worker exits about a second after its last task.

    A worker that ran read, validate or map tasks keeps every object-store page it wrote mapped for
    as long as it lives: at 1 M series three idle workers held 5.0 GiB of the object store (RssShmem)
    and 0.8 GiB of their own while the predictor actors started. The cost is a new worker process
    (about a second) for a task that finds none idle.
    """
    return {"num_workers_soft_limit": cfg.ray.idle_workers}


def init_ray(cfg: Config) -> None:
    """Join the cluster named by ray.address / RAY_ADDRESS, or start a local Ray sized for the job;
    Ray's console lines at ray.log_level (forecaster.console)."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    level = cfg.ray.log_level
    quiet_ray(level)
    if not ray.is_initialized():
        address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
        env_vars = worker_env_vars()
        passed = sorted(set(env_vars) - set(RAY_ENV))
        if passed:
            log.info("passing %s to Ray workers", ", ".join(passed))  # names only: values may be secrets
        taken = _job_env_var_names(os.environ)
        env_vars.update({k: v for k, v in ray_log_env(level).items() if k not in taken})
        runtime_env = {"env_vars": env_vars}
        hook = setup_hook(cfg, local=not address)
        if hook:
            runtime_env["worker_process_setup_hook"] = hook
        if address:
            log.info("Ray: joining the cluster at %s", address)
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        else:
            env_vars.update(LOCAL_WORKER_ENV)
            log.info("Ray: starting a local Ray for this job%s", _cluster_hint())
            # address="local": always a new local Ray, never the cluster (or the stale address file of a
            # killed one) that a plain ray.init() would try to join. No dashboard by default: its ten
            # processes hold about 1 GiB, a third of a small job's memory
            ray.init(address="local", num_cpus=local_cpus(cfg), runtime_env=runtime_env, configure_logging=False,
                     include_dashboard=cfg.ray.dashboard, _system_config=local_system_config(cfg))
    check_shared_storage(cfg)  # also where the caller had joined a cluster before calling the job
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # forecaster.console draws the progress line of predict + write
    ctx.print_on_execution_start = verbose(level)
    data_cpus = cfg.ray.data_cpus or ray.cluster_resources().get("CPU", 1)
    ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(cpu=data_cpus)


def _cluster_hint() -> str:
    """Where `ray start` left a cluster's address file on this machine: how to join that cluster instead.
    Only a hint: Ray's private helper moving or an unreadable file gives none, never an error."""
    try:
        from ray._private.utils import read_ray_address

        found = read_ray_address()
    except (ImportError, OSError):
        return ""
    if not found:
        return ""
    return (f", not the cluster at {found} that this machine's Ray address file names (perhaps a stopped one; "
            "ray.address=auto or RAY_ADDRESS joins it)")


STORAGE_KEYS = ("data.uri", "data.static_uri", "data.future_uri", "output.uri", "train.storage_path")


def check_shared_storage(cfg: Config) -> None:
    """Stop a run on a cluster of several nodes whose input, output or checkpoints lie on a local path.

    Ray Data tasks, predictor actors and Ray Train workers run on every node, and each reads and
    writes these locations itself; Ray Train requires storage that every node reaches (cloud storage
    or a shared file system) for multi-node training. A local path is allowed where the user says it
    is one shared mount on every node (ray.shared_local_paths).
    """
    if cfg.ray.shared_local_paths:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    for key in STORAGE_KEYS:
        section, name = key.split(".")
        uri = getattr(getattr(cfg, section), name)
        if uri and resolve(uri, cfg.data.storage_options).is_local:
            raise ConfigError(
                f"{key}={uri!r} is a path on this machine, but the Ray cluster has {len(nodes)} nodes: the others "
                "cannot see it (Ray Train needs storage that every node reaches for multi-node runs). Use s3:// or "
                "gs://, or a shared mount (NFS) on every node with ray.shared_local_paths=true")


class NodeSet:
    """A Ray actor (see `node_set`) that collects the node ids of the actors that report to it."""

    def __init__(self):
        self.nodes: set[str] = set()

    def add(self, node_id: str) -> None:
        self.nodes.add(node_id)

    def sorted(self) -> list[str]:
        return sorted(self.nodes)


def node_set():
    """A NodeSet actor: no CPU of its own, never restarted (a lost one loses the record, not the run)."""
    return ray.remote(num_cpus=0, max_restarts=0)(NodeSet).remote()


def nodes_of(recorder, timeout: float = 10) -> list[str]:
    """What `recorder` (a NodeSet actor) collected, then the actor is killed; [] when it cannot be read."""
    try:
        return ray.get(recorder.sorted.remote(), timeout=timeout)
    except Exception as exc:  # a lost record does not fail the committed run
        log.warning("where the predictors ran is unknown: %s", exc)
        return []
    finally:
        with contextlib.suppress(Exception):
            ray.kill(recorder)


def predict_actors(cfg: Config, series: int | None = None) -> int:
    """Prediction actors: predict.actors where set. By default one per CPU of the cluster less one for the
    driver-side work; on GPUs, at most one per GPU the cluster has now (prediction never scales the cluster
    up by itself); and never more than the batches of predict.batch_size that `series` series make: an
    actor without a batch would only start (a process that imports torch) and stop."""
    if cfg.predict.actors is not None:
        return cfg.predict.actors
    if cfg.train.use_gpu:
        actors = max(1, int(ray.cluster_resources().get("GPU", 1)))
    else:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    if series is not None:
        actors = min(actors, max(1, math.ceil(series / cfg.predict.batch_size)))
    return actors


def predict_pool(cfg: Config, series: int | None = None) -> ray.data.ActorPoolStrategy:
    """The predictor actors for `series` series (see `predict_actors`), all started at once.

    Ray Data's actor autoscaler grows a pool from `min_size` only once inputs queue up behind busy
    actors, and each actor accepts two tasks at a time: a pool that starts with one actor leaves the
    others idle or unstarted while the first takes the early blocks (docs/benchmarks.md has the
    figures). `initial_size` = `max_size` starts every actor before the first block; `min_size=1`
    still lets the pool shrink.
    """
    actors = predict_actors(cfg, series)
    return ray.data.ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors)
