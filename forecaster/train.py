"""Train: the Ray Train (DDP) loop over series shards, early stopping and checkpoints.

Each worker reads its shard of series rows with `get_dataset_shard("train")`, cuts random windows
from a block of series at a time (never all windows at once), and steps the DDP model. After each
epoch every worker scores the validation windows of its shard (the last `horizon` points of each
series); the sums are all-reduced so that every rank sees the same validation loss and takes the
same early-stopping decision. Rank 0 writes the checkpoint (current and best weights, optimiser,
early-stopping state, config); every rank calls `report`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import pyarrow.fs as pafs
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from forecaster.config import Config, ConfigError
from forecaster.covariates import FeatureSpec, feature_spec
from forecaster.evaluate import validation_scores
from forecaster.features import SeriesBlock, Windows, training_windows, validation_windows
from forecaster.model import autocast_bf16, build_model, combine, masked_loss, per_step_loss, quantiles_for
from forecaster.read import ID
from forecaster.runtime import fault_hook_env
from forecaster.storage import Location, exists, read_json, resolve
from forecaster.theta import network_forecast, theta

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"
FAULT_ENV = "FORECASTER_TEST_KILL_RANK"  # test-only fault hook, see _maybe_fail


def loop_config(cfg: Config, features: FeatureSpec | None = None) -> dict:
    """What the worker loop needs: no URIs, no storage options (credentials stay on the driver).

    `features`: the covariates the model reads (default: calendar features only, as the config says).
    """
    features = features or feature_spec(cfg)
    return {
        "model": {
            "horizon": cfg.model.horizon,
            "input_size": cfg.input_size,
            "hidden_size": cfg.model.hidden_size,
            "num_layers": cfg.model.num_layers,
            "dropout": cfg.model.dropout,
            "loss": cfg.model.loss,
            "quantiles": quantiles_for(cfg.model.levels) if cfg.model.loss == "quantile" else [0.5],
            "levels": list(cfg.model.levels) if cfg.model.loss == "quantile" else [],
            "scaler": cfg.model.scaler,
            "scaler_type": cfg.model.scaler_type,
            "season": cfg.season,
            "ensemble_size": cfg.model.ensemble_size,
            "skip": cfg.model.skip,
            "features": features.to_dict(),
        },
        "train": {
            "max_epochs": cfg.train.max_epochs,
            "patience": cfg.train.patience,
            "batch_size": cfg.train.batch_size,
            "windows_per_series": cfg.train.windows_per_series,
            "series_per_block": cfg.train.series_per_block,
            "learning_rate": cfg.train.learning_rate,
            "ema_decay": cfg.train.ema_decay,
            "seed": cfg.train.seed,
            "threads": max(1, int(cfg.train.cpus_per_worker)),
            "warm_epochs": cfg.train.warm_epochs,
            "diagnostics": cfg.train.diagnostics,
            "precision": cfg.train.precision,
            "combine": cfg.model.combine,  # validation scores the forecast as the predictor makes it
            "worst_series": cfg.report.worst_series,
        },
    }


def _blocks(shard, series_per_block: int, spec: FeatureSpec) -> Iterator[SeriesBlock]:
    for batch in shard.iter_batches(batch_size=series_per_block, batch_format="pyarrow"):
        yield SeriesBlock.from_batch(batch, spec)


def _to_tensors(w: Windows, rows: np.ndarray, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(model inputs, targets, target mask) of windows `rows` on `device`."""
    inputs = {k: torch.from_numpy(v).to(device) for k, v in w.model_inputs(rows).items()}
    y = torch.from_numpy(w.targets[rows].astype(np.float32))
    m = torch.from_numpy(w.target_mask[rows].astype(np.float32))
    return inputs, y.to(device), m.to(device)


def _all_ranks(flag: bool, device) -> bool:
    """True only if every rank says True (keeps DDP ranks stepping in lockstep)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def _all_sum(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _minibatches(shard, m: dict, t: dict, rng: np.random.Generator, local_batch: int) -> Iterator:
    for block in _blocks(shard, t["series_per_block"], FeatureSpec.from_dict(m.get("features"))):
        w = training_windows(block, m["input_size"], m["horizon"], t["windows_per_series"], rng, m["scaler"],
                             m.get("scaler_type", "robust"))
        order = rng.permutation(len(w))
        for i in range(0, len(order), local_batch):
            yield w, order[i:i + local_batch]


def train_step(model, optimizer, w: Windows, rows: np.ndarray, m: dict, device, precision: str = "fp32") -> float:
    """One optimiser step on windows `rows` of `w`; returns the loss.

    precision="bf16" runs the forward pass under bfloat16 autocast (cuDNN LSTM on GPUs) where the device
    can (model.bf16_supported; fp32 elsewhere, with one warning); the loss and the optimiser stay in
    float32 (bf16 needs no loss scaling).
    """
    x, y, mask = _to_tensors(w, rows, device)
    optimizer.zero_grad(set_to_none=True)
    bf16 = autocast_bf16(precision, device.type)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        prediction = model(**x)
    loss = masked_loss(prediction.float(), y, mask, m["loss"], m["quantiles"])
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights (None for decay 0), updated after every
    optimiser step. The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that
    the first steps from the random initial weights are soon forgotten."""
    if decay <= 0:
        return None

    def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor | int) -> None:
        n = float(n)  # one host sync per step, for all parameters
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)  # averaged = d * averaged + (1 - d) * current

    return AveragedModel(model, multi_avg_fn=ema)


def _train_epoch(model, optimizer, shard, m, t, rng, local_batch, device, ema=None) -> tuple[float, int]:
    model.train()
    loss_sum, steps, windows = 0.0, 0, 0
    batches = _minibatches(shard, m, t, rng, local_batch)
    while True:
        item = next(batches, None)
        if not _all_ranks(item is not None, device):
            break
        w, rows = item
        loss_sum += train_step(model, optimizer, w, rows, m, device, t.get("precision", "fp32"))
        if ema is not None:
            ema.update_parameters(model)  # a DDP wrapper yields its module's parameters, in order
        steps += 1
        windows += len(rows)
    return loss_sum / max(steps, 1), windows


# validation scores (means over series): mase_<name>, smape_<name> of the network forecast (the LSTM
# or its combination, model.combine), the LSTM, Theta and the (seasonal) naive baselines
VALIDATED_COLUMNS = {"forecast": "forecast", "lstm": "LSTM", "theta": "Theta", "seasonal_naive": "SeasonalNaive",
                     "naive": "Naive"}  # score name -> the output column it scores
SCORES = tuple(f"{metric}_{name}" for name in VALIDATED_COLUMNS for metric in ("mase", "smape"))


@torch.no_grad()
def _validate(model, shard, m, t, device) -> tuple[float, dict, list]:
    """Loss, mean scores (SCORES) over the last `horizon` points of every series of all shards, and the
    `t["worst_series"]` series where the network forecast's MASE exceeds seasonal naive's the most
    (dicts of unique_id and both MASEs, worst first). MASE is averaged over series where it is defined."""
    model.eval()
    sums = np.zeros(2 + 2 * len(SCORES))  # loss total, loss count, then (sum, count) per score
    spec = FeatureSpec.from_dict(m.get("features"))
    keep = t.get("worst_series", 0)
    worst: list[tuple[float, str, float, float]] = []
    for batch in shard.iter_batches(batch_size=t["series_per_block"], batch_format="pyarrow"):
        block = SeriesBlock.from_batch(batch, spec)
        w = validation_windows(block, m["input_size"], m["horizon"], m["scaler"], m.get("scaler_type", "robust"))
        x, y, mask = _to_tensors(w, np.arange(len(w)), device)
        prediction = combine(model(**x))  # an ensemble is scored by its mean forecast
        scaled = prediction[..., 0]  # the point forecast (median for quantile loss)
        sums[0] += float((per_step_loss(prediction, y, m["loss"], m["quantiles"]) * mask).sum())
        sums[1] += float(mask.sum())
        lstm = w.unscale(scaled.float().cpu().numpy().astype(np.float64))
        statistical = theta(block, block.lengths - m["horizon"], m["horizon"], m["season"])
        forecasts = {"forecast": network_forecast(lstm, statistical, t.get("combine", "none")), "lstm": lstm,
                     "theta": statistical}
        scores = validation_scores(block, forecasts, m["horizon"], m["season"])
        for i, name in enumerate(SCORES):
            defined = np.isfinite(scores[name])
            sums[2 + 2 * i] += scores[name][defined].sum()
            sums[3 + 2 * i] += defined.sum()
        if keep:
            gap = scores["mase_forecast"] - scores["mase_seasonal_naive"]
            ids = batch[ID].to_pylist()
            worst = sorted(worst + [(float(gap[i]), ids[i], float(scores["mase_forecast"][i]),
                                     float(scores["mase_seasonal_naive"][i]))
                                    for i in np.flatnonzero(np.isfinite(gap))], reverse=True)[:keep]
    sums = _all_sum(sums.tolist(), device)
    means = {name: sums[2 + 2 * i] / sums[3 + 2 * i] if sums[3 + 2 * i] else None for i, name in enumerate(SCORES)}
    if keep:
        worst = sorted((row for rank in _gather(worst) for row in rank), reverse=True)[:keep]
    worst = [{"unique_id": uid, "mase_forecast": fc, "mase_seasonal_naive": sn} for _, uid, fc, sn in worst]
    return sums[0] / max(sums[1], 1.0), means, worst


def _maybe_fail(epoch: int, rank: int) -> None:
    """Test-only: `FORECASTER_TEST_KILL_RANK=<rank>:<epoch>:<marker file>` kills that rank once."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kill_rank, kill_epoch, marker = spec.split(":", 2)
    if rank == int(kill_rank) and epoch == int(kill_epoch) and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("killed\n")
        os._exit(1)


def _restore(model, config: dict) -> tuple[dict, dict | None]:
    """Resume from this run's last checkpoint (after a failure or a retried date), else warm-start
    from `config["warm_start"]` (an earlier run's checkpoint), else start fresh."""
    state = {"epoch": -1, "best_val": float("inf"), "bad_epochs": 0, "best_model": None, "restarts": 0,
             "best_scores": {}, "warm_started": False, "initial_val": None, "ema": None, "history": [],
             "best_epoch": None, "worst": [], "placement": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            saved = torch.load(os.path.join(path, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        state = {k: saved.get(k, state[k]) for k in state}
        state["restarts"] += 1
        return state, saved["optimizer"]
    if config.get("warm_start") is not None:
        with config["warm_start"].as_directory() as path:
            weights, _ = load_best_weights(path)
        model.load_state_dict(weights)
        state["warm_started"] = True
    return state, None


def train_loop_per_worker(config: dict) -> None:
    m, t = config["model"], config["train"]
    torch.set_num_threads(t["threads"])
    from ray.train.v2._internal.execution import context as train_context  # its logger is named by file

    # one INFO line per report per rank from Ray Train would drown the per-epoch progress
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(t["seed"])
    device = ray.train.torch.get_device()

    model = build_model(m)
    state, optimizer_state = _restore(model, config)
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=t["learning_rate"])
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    shard = ray.train.get_dataset_shard("train")
    local_batch = max(1, t["batch_size"] // world)
    plain = model.module if hasattr(model, "module") else model
    # every rank holds the same weights after each step, so every rank's average is the same
    ema = weight_average(plain, t.get("ema_decay", 0.0))
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    scored = ema.module if ema is not None else plain  # what validation, early stopping and forecasts use
    max_epochs = t["warm_epochs"] if state["warm_started"] else t["max_epochs"]
    # where this attempt runs: the node of each rank (an attempt after a failure may run elsewhere)
    state["placement"] = [*state["placement"], _gather(ray.get_runtime_context().get_node_id())]
    diagnostics = _shard_diagnostics(shard, t) if t.get("diagnostics") else {}
    initial_val = None
    if state["epoch"] < 0:  # where training begins: untrained, or the warm start's weights
        initial_val, _, _ = _validate(scored, shard, m, t, device)

    for epoch in range(state["epoch"] + 1, max_epochs):
        if state["bad_epochs"] >= t["patience"]:
            break
        rng = np.random.default_rng([t["seed"], rank, epoch])
        _maybe_fail(epoch, rank)
        started = time.perf_counter()
        train_loss, windows = _train_epoch(model, optimizer, shard, m, t, rng, local_batch, device, ema)
        train_seconds = time.perf_counter() - started
        val_loss, scores, worst = _validate(scored, shard, m, t, device)
        train_loss, windows = _all_sum([train_loss / world, float(windows)], device)
        if val_loss < state["best_val"]:
            state.update(best_val=val_loss, bad_epochs=0, best_model=copy.deepcopy(scored.state_dict()),
                         best_scores={f"val_{k}": v for k, v in scores.items()}, best_epoch=epoch, worst=worst)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"] = [*state["history"], {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}]
        state["ema"] = ema.state_dict() if ema is not None else None
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best_val_loss": state["best_val"],
            "windows": int(windows),
            "restarts": state["restarts"],
            "warm_started": state["warm_started"],
            "train_seconds": train_seconds,
            "epoch_seconds": time.perf_counter() - started,
            "history": state["history"],  # every epoch so far, the resumed ones included
            "best_epoch": state["best_epoch"],
            "worst_series": state["worst"],  # of the best epoch
            "placement": state["placement"],  # node ids by rank, one list per attempt
            **state["best_scores"],
        }
        if initial_val is not None:
            state["initial_val"] = initial_val
        metrics["initial_val_loss"] = state.get("initial_val")
        if diagnostics:  # evidence that DDP works, for tests and debugging (train.diagnostics)
            metrics.update(diagnostics, param_checksums=_param_checksums(plain))
        if rank == 0:
            _progress(metrics, state)
        with tempfile.TemporaryDirectory() as tmp:
            saved_checkpoint = None
            if rank == 0:
                save_checkpoint(tmp, plain, config, optimizer, state)
                saved_checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=saved_checkpoint)


def _gather(value) -> list:
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _shard_diagnostics(shard, t: dict) -> dict:
    """How many series each rank's shard holds and how many ids two shards share (should be 0)."""
    ids = [i for b in shard.iter_batches(batch_size=t["series_per_block"], batch_format="pyarrow")
           for i in b[ID].to_pylist()]
    sets = [set(g) for g in _gather(ids)]
    overlap = sum(len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    return {"shard_sizes": [len(s) for s in sets], "shard_overlap": overlap}


def _param_checksums(model) -> list[float]:
    return _gather(float(sum(p.detach().double().sum() for p in model.parameters())))


def _progress(metrics: dict, state: dict) -> None:
    progress = logging.getLogger("forecaster.progress")
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False
    progress.info(
        "epoch %3d  train_loss %.4f  val_loss %.4f  best %.4f  %d windows in %.1f s (%.0f windows/s)%s",
        metrics["epoch"], metrics["train_loss"], metrics["val_loss"], metrics["best_val_loss"],
        metrics["windows"], metrics["epoch_seconds"], metrics["windows"] / max(metrics["train_seconds"], 1e-9),
        "" if state["bad_epochs"] else "  *",
    )


def save_checkpoint(directory: str, model, config: dict, optimizer=None, state: dict | None = None) -> None:
    """Write model.pt (weights, optimiser, early-stopping state) and config.json into `directory`."""
    state = state or {"epoch": -1, "best_val": float("inf"), "bad_epochs": 0, "best_model": None,
                      "restarts": 0, "best_scores": {}}
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else {}, **state}
    torch.save(payload, os.path.join(directory, CHECKPOINT_FILE))
    with open(os.path.join(directory, "config.json"), "w") as fh:
        json.dump({"model": config["model"], "train": config["train"]}, fh, indent=2, sort_keys=True)


def load_best_weights(checkpoint_dir: str) -> tuple[dict, dict]:
    """(state_dict of the best epoch, loop config) from a checkpoint directory."""
    saved = torch.load(os.path.join(checkpoint_dir, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    with open(os.path.join(checkpoint_dir, "config.json")) as fh:
        config = json.load(fh)
    return saved["best_model"] or saved["model"], config


ARCHITECTURE_KEYS = ("horizon", "input_size", "hidden_size", "num_layers", "quantiles", "features", "ensemble_size",
                     "skip")


def warm_start_checkpoint(cfg: Config, config: dict | None = None) -> ray.train.Checkpoint | None:
    """The checkpoint named by train.warm_start: none, latest (the newest earlier date's manifest
    under output.uri) or a checkpoint URI; checked against this run's architecture."""
    choice = cfg.train.warm_start
    if choice == "none":
        return None
    uri = _latest_checkpoint_uri(cfg) if choice == "latest" else choice
    if uri is None:
        log.info("train.warm_start=latest: no earlier run with a checkpoint; training from scratch")
        return None
    loc = resolve(uri, cfg.data.storage_options)
    checkpoint = ray.train.Checkpoint(path=loc.path, filesystem=loc.fs)
    try:
        with checkpoint.as_directory() as path:
            with open(os.path.join(path, "config.json")) as fh:
                saved = json.load(fh)["model"]
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"train.warm_start={uri}: not a readable forecaster checkpoint ({exc})") from None
    _check_architecture(saved, (config or loop_config(cfg))["model"], f"train.warm_start={uri}: checkpoint")
    log.info("warm start from %s", uri)
    return checkpoint


def _check_architecture(saved: dict, wanted: dict, what: str) -> None:
    """ConfigError naming the first model key whose saved value differs from this run's."""
    # checkpoints from before these keys
    defaults = {"features": FeatureSpec().to_dict(), "ensemble_size": 1, "skip": "none"}
    for key in ARCHITECTURE_KEYS:
        value = saved.get(key, defaults.get(key))
        if value != wanted[key]:
            raise ConfigError(f"{what} has model {key}={value}, this run has {wanted[key]}")


def check_resumable(storage: Location, name: str, config: dict) -> None:
    """Ray Train resumes a run whose name exists under the storage path (a retried date). Refuse, before
    any worker starts, to resume one whose checkpoint holds another architecture (the config changed
    between the tries): the workers would fail on the weights' shapes."""
    run = storage.join(name)
    found = run.fs.get_file_info(pafs.FileSelector(run.path, allow_not_found=True))
    checkpoints = sorted(i.path for i in found if i.type == pafs.FileType.Directory
                         and i.base_name.startswith("checkpoint_"))
    if not checkpoints:
        return
    try:
        with run.fs.open_input_stream(checkpoints[-1] + "/config.json") as fh:
            saved = json.loads(fh.read())["model"]
    except (OSError, KeyError, ValueError):
        return  # not one of ours: Ray Train's own resume decides
    _check_architecture(saved, config["model"],
                        f"run.name/run.date: the Ray Train run {name} being resumed under {storage.uri} "
                        f"(delete it or pick another run.name to start afresh) holds a checkpoint that")


def _latest_checkpoint_uri(cfg: Config) -> str | None:
    manifests = resolve(cfg.output.uri, cfg.data.storage_options).join("manifests")
    if not exists(manifests):
        return None
    earlier = []
    for info in manifests.fs.get_file_info(pafs.FileSelector(manifests.path)):
        name = info.base_name
        if name.startswith("forecast_date=") and name.endswith(".json"):
            date = name[len("forecast_date="):-len(".json")]
            if date < cfg.forecast_date:
                earlier.append((date, info.path))
    for _, path in sorted(earlier, reverse=True):
        manifest = read_json(Location(manifests.fs, path, path))
        if manifest.get("checkpoint_uri"):
            return manifest["checkpoint_uri"]
    return None


def run_name(cfg: Config) -> str:
    return f"{cfg.run.name}-{cfg.forecast_date}"


def scaling(cfg: Config) -> int | tuple[int, int]:
    """ScalingConfig's num_workers: fixed, or (train.min_workers, train.num_workers) for Ray Train's
    elastic training, which starts (and restarts after a lost node) with as many workers as the cluster
    holds in that range. The loop splits train.batch_size over however many ranks an attempt has."""
    if cfg.train.min_workers is None or cfg.train.min_workers == cfg.train.num_workers:
        return cfg.train.num_workers
    return (cfg.train.min_workers, cfg.train.num_workers)


def fit(cfg: Config, train_ds: ray.data.Dataset, callbacks: list | None = None) -> ray.train.Result:
    """Run the TorchTrainer over the clean series; returns Ray's Result (checkpoint, metrics).

    `callbacks`: Ray Train callbacks of the run (forecaster.tune passes Tune's TuneReportCallback).
    """
    from ray.train.torch import TorchTrainer

    storage_uri = cfg.train.storage_path or cfg.output.uri.rstrip("/") + "/checkpoints"
    storage = resolve(storage_uri, cfg.data.storage_options)
    config = loop_config(cfg, feature_spec(cfg, train_ds.schema().base_schema))
    config["warm_start"] = warm_start_checkpoint(cfg, config)
    check_resumable(storage, run_name(cfg), config)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling(cfg),
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=run_name(cfg),
            storage_path=storage.path,
            storage_filesystem=storage.fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            # Ray Train's own INFO lines (one per report per rank) drown the per-epoch progress: shown
            # only at ray.log_level=INFO (--verbose), like Ray's other lines (forecaster.console)
            logging_config=ray.train.LoggingConfig(log_level=cfg.ray.log_level),
            # test-only fault hooks must reach workers even when Ray was started before they were set
            worker_runtime_env={"env_vars": fault_hook_env()},
            callbacks=callbacks,
        ),
        datasets={"train": train_ds},
    )
    return trainer.fit()
