"""The checkpoint: its format, and which one a run starts from.

A checkpoint is a directory of two files, written by rank 0 after every epoch:

    model.pt      torch.save of {"model": weights, "optimizer": its state, **TrainingState}
    config.json   {"model": ModelSpec.to_dict(), "train": LoopSettings.to_dict()}

The training loop resumes from `load_state`; the predictor and warm start read `load_best`. This
module imports torch and pyarrow, never Ray Train: every predictor actor imports it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow.fs as pafs
import torch

from forecaster.columns import partition_date
from forecaster.config import Config, ConfigError
from forecaster.spec import LoopSettings, ModelSpec
from forecaster.storage import Location, exists, read_json, resolve
from forecaster.theta import UNRECORDED, resolved
from forecaster.write import MANIFESTS

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.pt"
SPEC_FILE = "config.json"


@dataclass
class TrainingState:
    """What the loop carries from epoch to epoch and over a restart, saved with the weights."""

    epoch: int = -1  # the last epoch done
    best_val: float = math.inf
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    best_model: dict | None = None  # weights of the best epoch (the averaged ones with train.ema_decay)
    best_epoch: int | None = None
    best_scores: dict = field(default_factory=dict)  # val_<score> of the best epoch
    worst: list = field(default_factory=list)  # the best epoch's series that the network forecast worst
    restarts: int = 0  # attempts resumed from a checkpoint after a failure
    warm_started: bool = False
    initial_val: float | None = None  # validation loss before the first epoch
    ema: dict | None = None  # the weight average's own state
    history: list = field(default_factory=list)  # {epoch, train_loss, val_loss} of every epoch
    placement: list = field(default_factory=list)  # node id of each rank, one list per attempt
    # the best epoch's interval calibration: {"levels": [L...], "quantiles": [[q per step] per level], "unit",
    # "short": {"edges", "quantiles": [per group: [[q per step] per level] or None]}} (forecaster.intervals:
    # record); None in checkpoints from before it, and older ones lack "unit" and "short"
    calibration: dict | None = None
    combine_weight: float | None = None  # the best epoch's LSTM weight in `forecast` (None: older checkpoints)
    # model.statistical=auto's choice (train._choice): {"configured", "chosen", "mase", "windows", "series",
    # "pairs"}; None for a configured partner and in checkpoints from before it
    statistical: dict | None = None
    refit_done: int = 0  # train.refit_epochs done (best_model is then the refit weights)


def save(directory: str, model: torch.nn.Module, spec: ModelSpec, settings: LoopSettings | None = None,
         optimizer: torch.optim.Optimizer | None = None, state: TrainingState | None = None) -> None:
    """Write the checkpoint files of `model` into `directory`."""
    state = state or TrainingState()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else {},
               **dataclasses.asdict(state)}
    torch.save(payload, os.path.join(directory, WEIGHTS_FILE))
    with open(os.path.join(directory, SPEC_FILE), "w") as fh:
        json.dump({"model": spec.to_dict(), "train": settings.to_dict() if settings else {}}, fh, indent=2,
                  sort_keys=True)


def _config(directory: str) -> dict:
    """config.json: {"model": the spec, "train": the loop's settings (for reading only)}."""
    with open(os.path.join(directory, SPEC_FILE)) as fh:
        return json.load(fh)


def read_spec(directory: str) -> ModelSpec:
    return ModelSpec.from_dict(_config(directory)["model"])


def _payload(directory: str) -> dict:
    return torch.load(os.path.join(directory, WEIGHTS_FILE), map_location="cpu", weights_only=True)


def load_state(directory: str) -> tuple[dict, dict, TrainingState]:
    """(weights, optimiser state, training state) to resume from; fields an older checkpoint lacks
    start as in a fresh TrainingState."""
    saved = _payload(directory)
    names = {f.name for f in dataclasses.fields(TrainingState)}
    return saved["model"], saved["optimizer"], TrainingState(**{k: v for k, v in saved.items() if k in names})


class Best(NamedTuple):
    """What a forecast or a warm start reads from a checkpoint (`load_best`). None: a checkpoint from
    before the field (or, for `statistical`, of a configured partner)."""

    weights: dict  # of the best epoch (after the refit, with train.refit_epochs)
    spec: ModelSpec
    calibration: dict | None  # the interval calibration (TrainingState.calibration)
    combine_weight: float | None  # the LSTM's weight in `forecast`
    statistical: dict | None  # model.statistical=auto's choice (TrainingState.statistical)
    # model.seasonality_level the statistical methods were validated and calibrated with (the loop's settings)
    seasonality_level: float | None

    # What the predictor forecasts with and the manifest records, for this checkpoint and the config's setting:
    # the one place that fills what an older checkpoint lacks.
    def partner(self, configured: str) -> str:
        """The partner of model.statistical=`configured`: itself, or for auto the one training chose, and
        for a checkpoint that records none (trained before auto, or with a configured partner)
        theta.UNRECORDED, the partner it was validated and calibrated with."""
        return resolved(configured, self.statistical, UNRECORDED)

    def level(self, configured: float) -> float:
        """The seasonality test's level: the one training used, where the checkpoint records it (its
        partner and intervals were validated with it), else model.seasonality_level=`configured`."""
        return configured if self.seasonality_level is None else self.seasonality_level


def load_best(directory: str) -> Best:
    saved, config = _payload(directory), _config(directory)
    return Best(saved.get("best_model") or saved["model"], ModelSpec.from_dict(config["model"]),
                saved.get("calibration"), saved.get("combine_weight"), saved.get("statistical"),
                (config.get("train") or {}).get("seasonality_level"))


# ---- which checkpoint --------------------------------------------------------------------------

def storage_uri(cfg: Config) -> str:
    """Where Ray Train keeps this job's runs: train.storage_path, else <output.uri>/checkpoints."""
    return cfg.train.storage_path or cfg.output.uri.rstrip("/") + "/checkpoints"


def run_name(cfg: Config) -> str:
    """The Ray Train run of a date: a retried date resumes it."""
    return f"{cfg.run.name}-{cfg.forecast_date}"


def checkpoint_uri(cfg: Config, checkpoint) -> str | None:
    """The URI (with its scheme) of a ray.train.Checkpoint under storage_uri(cfg), for the manifest."""
    if checkpoint is None:
        return None
    storage = resolve(storage_uri(cfg), cfg.data.storage_options)
    if storage.is_local:
        return checkpoint.path
    return storage_uri(cfg).rstrip("/") + checkpoint.path[len(storage.path):]


def warm_start_uri(cfg: Config) -> str | None:
    """The checkpoint URI train.warm_start names: none, latest (the newest earlier date's manifest under
    output.uri; None where there is none), or the URI itself."""
    choice = cfg.train.warm_start
    if choice == "none":
        return None
    uri = latest_checkpoint_uri(cfg) if choice == "latest" else choice
    if uri is None:
        log.info("train.warm_start=latest: no earlier run with a checkpoint; training from scratch")
    return uri


def checked_checkpoint(cfg: Config, uri: str, spec: ModelSpec):
    """The ray.train.Checkpoint at `uri` (what train.warm_start named), refused with a ConfigError unless
    it is a forecaster checkpoint of this run's model `spec`."""
    from ray.train import Checkpoint

    loc = resolve(uri, cfg.data.storage_options)
    checkpoint = Checkpoint(path=loc.path, filesystem=loc.fs)
    try:
        with checkpoint.as_directory() as path:
            saved = read_spec(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"train.warm_start={uri}: not a readable forecaster checkpoint ({exc})") from None
    spec.check_same_architecture(saved, f"train.warm_start={uri}: checkpoint")
    return checkpoint


def warm_start_checkpoint(cfg: Config, spec: ModelSpec):
    """The checkpoint train.warm_start names (`warm_start_uri`), checked against this run's model
    `spec`; None where it names none."""
    uri = warm_start_uri(cfg)
    if uri is None:
        return None
    checkpoint = checked_checkpoint(cfg, uri, spec)
    log.info("warm start from %s", uri)
    return checkpoint


def check_resumable(storage: Location, name: str, spec: ModelSpec) -> None:
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
        with run.fs.open_input_stream(f"{checkpoints[-1]}/{SPEC_FILE}") as fh:
            saved = ModelSpec.from_dict(json.loads(fh.read())["model"])
    except (OSError, KeyError, ValueError, TypeError):
        return  # not one of ours: Ray Train's own resume decides
    spec.check_same_architecture(
        saved, f"run.name/run.date: the Ray Train run {name} being resumed under {storage.uri} "
               f"(delete it or pick another run.name to start afresh) holds a checkpoint that")


def latest_checkpoint_uri(cfg: Config) -> str | None:
    """The checkpoint of the newest run before run.date that recorded one in its manifest."""
    manifests = resolve(cfg.output.uri, cfg.data.storage_options).join(MANIFESTS)
    if not exists(manifests):
        return None
    earlier = []
    for info in manifests.fs.get_file_info(pafs.FileSelector(manifests.path)):
        date = partition_date(info.base_name, ".json")
        if date is not None and date < cfg.forecast_date:
            earlier.append((date, info.path))
    for _, path in sorted(earlier, reverse=True):
        manifest = read_json(Location(manifests.fs, path, path))
        if manifest.get("checkpoint_uri"):
            return manifest["checkpoint_uri"]
    return None
