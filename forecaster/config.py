"""Typed configuration: one tree of dataclasses, loaded from YAML and overridden by `--set a.b=c`.

Every field has a default, so `forecaster run --set data.uri=...` works without a file. Unknown keys
and bad values raise `ConfigError` naming the key (and the closest valid key) before any work starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import re
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

INTERVAL_UNITS = ("spread", "mase")  # model.interval_unit (forecaster/intervals.py)
REALISED, VALIDATION = "realised", "validation"  # model.interval_calibration (forecaster/intervals.py)


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key."""


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None,  # noqa: A002
            choices: tuple | None = None, minimum: int | None = None) -> Any:
    """A config key: its default (or `factory` for a list or dict), its help line (the config reference,
    docs/config.md) and what `load_config` checks: one of `choices`, or at least `minimum`."""
    metadata = {"help": help, "choices": choices, "minimum": minimum}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    uri: str = setting("examples/data/m1_monthly.parquet", "Parquet file, directory or Hive dataset (any fsspec URL)")
    freq: str = setting("MS", "pandas offset alias: MS, QS, YS, W, D, h ...")
    id_col: str = setting("unique_id", "series identifier column")
    time_col: str = setting("ds", "timestamp column")
    target_col: str = setting("y", "value column")
    storage_options: dict = setting(help="fsspec options (e.g. endpoint_url); never logged", factory=dict)
    past_covariates: list = setting(help="numeric input columns known only up to each step", factory=list)
    future_covariates: list = setting(help="numeric input columns known ahead (price, promotion)", factory=list)
    future_uri: str | None = setting(None, "Parquet (id, time, future_covariates) for the horizon after each series' "
                                           "end")
    static_covariates: list = setting(help="per-series constant columns; text/integer -> embedding", factory=list)
    static_uri: str | None = setting(None, "Parquet (id, static_covariates), one row per series; default: the input")


@dataclass
class ModelConfig:
    horizon: int = setting(18, "forecast steps", minimum=1)
    input_size: int | None = setting(None, "input window; default max(2h, min(3*season, 5h), 8)", minimum=1)
    hidden_size: int = setting(64, "LSTM hidden units", minimum=1)
    num_layers: int = setting(2, "stacked LSTM layers", minimum=1)
    dropout: float = setting(0.1, "between LSTM layers and before the head")
    loss: str = setting("mae", "mae | mse | quantile (pinball loss over the median and model.levels)",
                        choices=("mae", "mse", "quantile"))
    levels: list = setting(help="prediction intervals (percent): forecast's, calibrated whatever the loss "
                                "(model.interval_calibration), and the LSTM's own with loss=quantile",
                           factory=lambda: [80, 95])
    interval_unit: str = setting("spread", "the unit the intervals of `forecast` are calibrated and drawn in: "
                                           "spread (each series' MASE scale plus a multiple of the standard "
                                           "deviation of its models' forecasts: wider where they disagree; "
                                           "forecaster/intervals.py) | mase (the MASE scale alone)",
                                 choices=INTERVAL_UNITS)
    interval_calibration: str = setting(REALISED, "what the intervals of `forecast` are calibrated on: realised (the "
                                                  "errors earlier runs' forecasts under output.uri made against "
                                                  "the actuals that arrived since, as the scores stage joins "
                                                  "them, at each step with enough of them; the validation "
                                                  "window's elsewhere and for series too short for the network) "
                                                  "| validation (the validation window's alone)",
                                        choices=(REALISED, VALIDATION))
    combine: str = setting("theta", "theta: forecast = mean of the LSTM and model.statistical | fitted: their "
                                    "weighted mean, the LSTM's weight (0, 0.1 .. 1) chosen by MASE on the validation "
                                    "window | none: the LSTM alone",
                           choices=("theta", "fitted", "none"))
    statistical: str = setting("auto", "the LSTM's statistical partner in `forecast`, and the forecast of series too "
                                       "short for it: auto (otm_damped or theta_ses, whichever had the lower MASE on "
                                       "the series' last 3 horizons, chosen once per run) | otm_damped (the mean of "
                                       "the optimised Theta method and damped-trend exponential smoothing) | "
                                       "theta_ses (the mean of the Theta method and simple exponential smoothing) | "
                                       "theta_damped (the mean of Theta and the damped trend) | theta (Theta alone)",
                               choices=("auto", "otm_damped", "theta_ses", "theta_damped", "theta"))
    seasonality_level: float = setting(0.5, "the level, in [0, 1], of the seasonality test (R's thetaf's, of the "
                                            "autocorrelation at the season's lag) above which the statistical methods "
                                            "adjust a series for its season: 0.5 by default; 0.9 as thetaf, for data "
                                            "with little season; 1 adjusts none")
    fallback: str = setting("none", "none | validation: seasonal naive where it beat the network on the series' last "
                                    "horizon",
                            choices=("validation", "none"))
    nonnegative: str = setting("auto", "auto: `forecast` and its interval bounds floored at zero for the series with "
                                       "no value below zero | none", choices=("auto", "none"))
    short_series: str = setting("baseline", "series under horizon+2 points: baseline (forecast by "
                                            "model.statistical) | reject",
                                choices=("baseline", "reject"))
    scaler: str = setting("window", "window: stats of each input window | series: per series up to the cutoff",
                          choices=("window", "series"))
    scaler_type: str = setting("standard", "standard (mean, std) | robust (median, IQR) | minmax | none",
                               choices=("robust", "standard", "minmax", "none"))
    calendar: str = setting("auto", "auto: calendar features of each step's date for data.freq (month, weekday...) | "
                                    "none",
                            choices=("auto", "none"))
    skip: str = setting("linear", "linear: a linear map from the input window to the horizon, added to the LSTM's "
                                  "output | none",
                        choices=("linear", "none"))
    ensemble_size: int = setting(1, "networks trained from different seeds; their forecasts are averaged", minimum=1)
    static_buckets: int = setting(1024, "hash buckets of categorical static values (one shared embedding table)",
                                  minimum=1)
    static_embedding_dim: int = setting(4, "embedding width per categorical static column", minimum=1)


@dataclass
class TrainConfig:
    num_workers: int = setting(2, "Ray Train workers (DDP ranks)", minimum=1)
    min_workers: int | None = setting(None, "elastic: train on as few as this many workers when no more fit; None: "
                                            "fixed",
                                      minimum=1)
    cpus_per_worker: float = setting(1.0, "Ray CPUs per worker; torch threads = max(1, floor(this))")
    use_gpu: bool = setting(False, "one GPU per worker")
    precision: str = setting("bf16", "bf16: the forward pass under bfloat16 autocast where the device has bf16 "
                                     "units (CUDA with bf16, CPUs with AVX-512 BF16 or AMX; fp32 elsewhere) | fp32",
                             choices=("fp32", "bf16"))
    max_epochs: int = setting(30, "upper bound on epochs", minimum=1)
    patience: int = setting(5, "early stopping: epochs without validation improvement", minimum=1)
    refit_epochs: int = setting(3, "after early stopping, epochs that go on training the best weights on whole "
                                   "series, the validation window included (otherwise the last horizon points are "
                                   "never a target); 0: off", minimum=0)
    batch_size: int = setting(256, "windows per optimiser step (global, split across workers)", minimum=1)
    windows_per_series: int = setting(32, "random training windows cut from each series per epoch", minimum=1)
    recent_horizons: float | None = setting(3, "training windows' cutoffs (where their inputs end) within the last "
                                               "this many horizons of each series' training part (N-BEATS' "
                                               "history limit L_H); null: anywhere in it", minimum=1)
    max_windows_per_epoch: int | None = setting(262144, "cap on the training windows of an epoch, whatever the "
                                                        "number of series: fewer windows per series beyond cap / "
                                                        "windows_per_series series (8192 at the defaults); null: "
                                                        "no cap", minimum=1)
    max_validation_series: int | None = setting(65536, "validation (early stopping, its scores, the interval "
                                                       "calibration) on at most this many series, the same ones "
                                                       "every epoch (by a hash of the series id); null: every series",
                                                minimum=1)
    series_per_block: int = setting(512, "series read from the shard at a time (memory bound of the loop)", minimum=1)
    learning_rate: float = setting(1e-3, "Adam")
    loss_weight: str = setting("mase", "mase: each window's errors over its input's mean absolute seasonal difference "
                                       "(MASE's scale, in the window's scaled units), for training and early stopping "
                                       "| none: errors in scaled units",
                               choices=("mase", "none"))
    ema_decay: float = setting(0.99, "forecasts and early stopping use a moving average of the weights; 0: off")
    seed: int = setting(0, "seeds torch, numpy and window sampling")
    storage_path: str | None = setting(None, "Ray Train storage (checkpoints); default <output.uri>/checkpoints")
    max_failures: int = setting(1, "worker failures tolerated; training resumes from the last checkpoint", minimum=0)
    warm_start: str = setting("none", "none | latest (newest earlier date under output.uri) | a checkpoint URI")
    warm_epochs: int = setting(10, "epoch limit when warm-starting; 0: forecast with the warm start's model as it is "
                                   "(no training, no Ray Train run)", minimum=0)
    diagnostics: bool = setting(False, "report per-rank parameter checksums and shard overlap (DDP checks)")


@dataclass
class PredictConfig:
    actors: int | None = setting(None, "Ray Data predictor actors; default cluster CPUs - 1 (at least 1), at most "
                                       "one per predict.batch_size series", minimum=1)
    batch_size: int = setting(4096, "series per map_batches call", minimum=1)
    precision: str = setting("bf16", "bf16: the predictor's network in bfloat16 weights where the device has bf16 "
                                     "units (fp32 elsewhere) | fp32", choices=("fp32", "bf16"))


@dataclass
class OutputConfig:
    uri: str = setting("out/demo", "root of forecasts/, rejects/, manifests/")


@dataclass
class RunSection:
    date: str | None = setting(None, "forecast date YYYY-MM-DD; default today (UTC)")
    name: str = setting("forecaster", "prefix of the Ray Train run name (one run per date)")


@dataclass
class RaySection:
    address: str | None = setting(None, "Ray address, 'auto' = this machine's cluster; None, no RAY_ADDRESS: a local "
                                        "Ray")
    num_cpus: int | None = setting(None, "CPUs of a local Ray; default max(cpu_count, workers*cpus_per_worker + 1)")
    data_cpus: float | None = setting(None, "CPU cap for Ray Data stages (resource_limits); default all but training")
    dashboard: bool = setting(False, "start Ray's dashboard with a local Ray (~1 GiB in 10 processes); clusters keep "
                                     "theirs")
    idle_workers: int = setting(0, "idle worker processes a local Ray keeps (num_workers_soft_limit); others exit "
                                   "after 1 s",
                                minimum=0)
    shared_local_paths: bool = setting(False, "local paths are one shared mount (NFS) on every node of a multi-node "
                                              "cluster")
    log_level: str = setting("WARNING", "Ray's own console lines: WARNING (warnings, errors) | INFO (all of them; "
                                        "--verbose)",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass
class TuneSection:
    trials: int = setting(8, "`forecaster tune`: trials sampled from the search space (--trials)", minimum=1)
    max_epochs: int | None = setting(None, "epoch cap of each trial; default train.max_epochs (the best config keeps "
                                           "that)",
                                     minimum=1)
    max_concurrent_trials: int = setting(1, "trials at once; each runs train.num_workers workers", minimum=1)
    grace_period: int = setting(2, "ASHA: epochs every trial runs before it may be stopped early", minimum=1)
    reduction_factor: int = setting(3, "ASHA: at each rung only the best 1/reduction_factor of trials go on", minimum=2)
    seed: int = setting(0, "seeds the random search")


@dataclass
class ScoreSection:
    enabled: bool = setting(True, "score earlier forecast partitions under output.uri against today's actuals "
                                  "(scores/)")
    max_origins: int = setting(30, "newest earlier forecast dates scored (those with a step observed now); the "
                                   "realised intervals' errors come from as many cutoffs, the newest date of each",
                               minimum=1)


@dataclass
class ReportSection:
    enabled: bool = setting(True, "write reports/forecast_date=<run.date>.html at the end of a run")
    sample_series: int = setting(6, "series plotted from a reproducible sample (by a hash of unique_id)", minimum=0)
    worst_series: int = setting(6, "series plotted where the network did worst against seasonal naive on validation",
                                minimum=0)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunSection = field(default_factory=RunSection)
    ray: RaySection = field(default_factory=RaySection)
    tune: TuneSection = field(default_factory=TuneSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    report: ReportSection = field(default_factory=ReportSection)

    # ---- derived values (not keys) ----
    @property
    def season(self) -> int:
        return season_length(self.data.freq)

    @property
    def input_size(self) -> int:
        if self.model.input_size is not None:
            return self.model.input_size
        horizon = self.model.horizon
        return max(2 * horizon, min(3 * self.season, 5 * horizon), 8)

    @property
    def realised_intervals(self) -> bool:
        """Whether the intervals of `forecast` are calibrated on earlier forecasts' realised errors (the run's
        scores stage, the backtest's earlier windows): model.interval_calibration=realised, with levels."""
        return self.model.interval_calibration == REALISED and bool(self.model.levels)

    @property
    def forecast_date(self) -> str:
        return self.run.date or dt.datetime.now(dt.timezone.utc).date().isoformat()

    def to_dict(self, redact: bool = True) -> dict:
        out = dataclasses.asdict(self)
        if redact and out["data"]["storage_options"]:
            out["data"]["storage_options"] = {k: "***" for k in out["data"]["storage_options"]}
        return out


_SEASON_BY_FREQ = {"Y": 1, "A": 1, "Q": 4, "M": 12, "W": 52, "D": 7, "B": 5, "h": 24, "H": 24, "min": 60, "s": 60}


def season_length(freq: str) -> int:
    """Seasonal period implied by a pandas offset alias (MS -> 12, QS -> 4, D -> 7, h -> 24)."""
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        # aliases this pandas no longer parses (M, Q, Y, A, H in pandas 3): the table still knows them
        return _SEASON_BY_FREQ.get(freq.strip().lstrip("0123456789").split("-")[0], 1)
    name = type(offset).__name__
    # "in", not startswith: BusinessMonthBegin (BMS), BQuarterBegin (BQS), BYearBegin (BYS) ...
    if "Year" in name:
        return 1
    if "Quarter" in name:
        return 4
    if "Month" in name:
        return 12
    if name == "Week":
        return 52
    if name in ("Day",):
        return 7
    if name.startswith("Business"):
        return 5
    if name == "Hour":
        return 24
    if name in ("Minute", "Second"):
        return 60
    return _SEASON_BY_FREQ.get(freq, 1)


def keys() -> list[tuple[str, dataclasses.Field]]:
    """Every config key (`section.name`) with its field, in the order of the dataclasses."""
    return [(f"{section.name}.{f.name}", f) for section in dataclasses.fields(Config)
            for f in dataclasses.fields(section.default_factory().__class__)]


def _check_values(cfg: Config) -> None:
    for key, f in keys():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        allowed, minimum = f.metadata["choices"], f.metadata["minimum"]
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
        if minimum is not None and value is not None and value < minimum:
            integral = str(f.type).startswith("int")  # a float key (train.recent_horizons) takes 1.5
            raise ConfigError(f"{key}={value}: " + ("must be a positive integer" if minimum == 1 and integral else
                                                    f"must be >= {minimum}"))
    if cfg.train.min_workers is not None and cfg.train.min_workers > cfg.train.num_workers:
        raise ConfigError(f"train.min_workers={cfg.train.min_workers}: must be at most "
                          f"train.num_workers={cfg.train.num_workers}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 100 for v in cfg.model.levels):
        raise ConfigError(f"model.levels={cfg.model.levels!r}: expected a list of percentages in (0, 100)")
    if not (math.isfinite(cfg.model.seasonality_level) and 0 <= cfg.model.seasonality_level <= 1):
        raise ConfigError(f"model.seasonality_level={cfg.model.seasonality_level}: must be in [0, 1] (0.9 is R's "
                          "thetaf's test, 1 adjusts no series for a season)")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout}: must be in [0, 1)")
    if not (math.isfinite(cfg.train.ema_decay) and 0 <= cfg.train.ema_decay < 1):
        raise ConfigError(f"train.ema_decay={cfg.train.ema_decay}: must be in [0, 1) (0 turns the average off)")
    if not (math.isfinite(cfg.train.learning_rate) and cfg.train.learning_rate > 0):
        raise ConfigError(f"train.learning_rate={cfg.train.learning_rate}: must be a finite number > 0")
    if not (math.isfinite(cfg.train.cpus_per_worker) and cfg.train.cpus_per_worker > 0):
        raise ConfigError(f"train.cpus_per_worker={cfg.train.cpus_per_worker}: must be a finite number > 0")
    try:
        with warnings.catch_warnings():
            # pandas 2 only warns on deprecated aliases (H, M, ...) that pandas 3 refuses: refuse both
            warnings.simplefilter("error", FutureWarning)
            offset = pd.tseries.frequencies.to_offset(cfg.data.freq)
    except (ValueError, FutureWarning) as exc:
        # pandas' own hint: "Did you mean h?" (pandas 3) or "please use 'h' instead" (pandas 2)
        hint = re.search(r"[Pp]lease use '([^']+)' instead|Did you mean ([^?'\"]+)\?", str(exc))
        raise ConfigError(
            f"data.freq={cfg.data.freq!r}: not a pandas offset alias (e.g. MS, QS, YS, W, D, h)"
            + (f"; pandas: Did you mean {hint.group(1) or hint.group(2)}?" if hint else "")
        ) from None
    if offset.n < 1:
        raise ConfigError(f"data.freq={cfg.data.freq!r}: the step must be positive (e.g. D, 2D)")
    if cfg.run.date is not None:
        try:
            # isoformat() round trip: Python >= 3.11 also accepts 20200101 and 2020-W01-1, which would
            # name the output partitions differently from the same day written as YYYY-MM-DD
            ok = dt.date.fromisoformat(cfg.run.date).isoformat() == cfg.run.date
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"run.date={cfg.run.date!r}: expected a calendar date YYYY-MM-DD")
    columns = {"data.id_col": cfg.data.id_col, "data.time_col": cfg.data.time_col,
               "data.target_col": cfg.data.target_col}
    for key, column in columns.items():
        if not column:
            raise ConfigError(f"{key}: must not be empty")
    if len(set(columns.values())) < len(columns):
        raise ConfigError(f"data.id_col, data.time_col and data.target_col must name 3 different columns: {columns}")
    _check_covariates(cfg, set(columns.values()))
    for key in ("data.uri", "output.uri"):
        section, name = key.split(".")
        if not getattr(getattr(cfg, section), name):
            raise ConfigError(f"{key}: must not be empty")


def _check_covariates(cfg: Config, reserved: set[str]) -> None:
    data = cfg.data
    seen: dict[str, str] = {}
    for key in ("past_covariates", "future_covariates", "static_covariates"):
        names = getattr(data, key)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"data.{key}={names!r}: expected a list of column names")
            if name in reserved:
                raise ConfigError(f"data.{key}: {name!r} is the id, time or target column")
            if name in seen:
                raise ConfigError(f"data.{key}: {name!r} is also listed in data.{seen[name]}")
            seen[name] = key
    if data.future_covariates and not data.future_uri:
        raise ConfigError("data.future_covariates needs data.future_uri (their values over the horizon)")
    if data.future_uri and not data.future_covariates:
        raise ConfigError("data.future_uri is set but data.future_covariates lists no column")
    if data.static_uri and not data.static_covariates:
        raise ConfigError("data.static_uri is set but data.static_covariates lists no column")


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Turn a YAML/--set value into the field's type, or raise ConfigError naming the key."""
    args = typing.get_args(typ)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), typ) if args else typ
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none") and optional):
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):  # --set train.use_gpu=1 arrives as YAML int
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if base in (dict, list):
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, base):
                raise ValueError
            return value
    except (TypeError, ValueError, yaml.YAMLError):
        shown = "=***" if key.startswith("data.storage_options") else f"={value!r}"  # may hold credentials
        raise ConfigError(f"{key}{shown}: expected {getattr(base, '__name__', base)}") from None
    return value


def _apply(cfg: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    sections = [f.name for f in dataclasses.fields(Config)]
    if parts[0] not in sections:
        raise ConfigError(f"unknown config section {parts[0]!r} in {key!r}{_suggest(parts[0], sections)}")
    section = getattr(cfg, parts[0])
    if len(parts) == 1:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of keys")
        for sub, v in value.items():
            _apply(cfg, f"{key}.{sub}", v)
        return
    types = _field_types(type(section))
    name = parts[1]
    if len(parts) > 2 and name == "storage_options":
        section.storage_options[".".join(parts[2:])] = value
        return
    if name not in types or len(parts) > 2:
        raise ConfigError(f"unknown config key {key!r}{_suggest(f'{parts[0]}.{name}', all_keys())}")
    setattr(section, name, _coerce(key, value, types[name]))


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: dates stay the text written, so a bad date such as
    2020-13-01 reaches _check_values (which names the key) instead of failing inside the YAML parser."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _is_text_key(key: str) -> bool:
    parts = key.split(".")
    cls = {f.name: f.default_factory for f in dataclasses.fields(Config)}.get(parts[0])
    if cls is None or len(parts) != 2:
        return False
    typ = _field_types(cls).get(parts[1])
    return typ is str or str in typing.get_args(typ)


def all_keys() -> list[str]:
    return [
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(Config)
        for f in dataclasses.fields(s.default_factory())
    ]


def parse_set(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", parsed value). Values are parsed as YAML scalars."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.load(raw, Loader=_Loader) if raw != "" else ""
    except (yaml.YAMLError, ValueError):
        value = raw
    # Keep dates and other YAML-typed scalars as the text the user wrote, and text keys as text:
    # YAML 1.1 would turn data.target_col=no into False and data.id_col=010 into 8.
    if isinstance(value, (dt.date, dt.datetime)) or (
        isinstance(value, (bool, int, float)) and _is_text_key(key)
    ):
        value = raw.strip()
    return key, value


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Build a Config from an optional YAML file and `key=value` overrides; validate it."""
    cfg = Config()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                raw = yaml.load(fh, Loader=_Loader)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"config file {path}: invalid YAML: {exc}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        for key, value in raw.items():
            _apply(cfg, str(key), value)
    for item in overrides or []:
        key, value = parse_set(item)
        _apply(cfg, key, value)
    _check_values(cfg)
    return cfg


def config_from_dict(values: dict) -> Config:
    """Rebuild a Config from `Config.to_dict(redact=False)` (used by workers and checkpoints)."""
    cfg = Config()
    for key, value in values.items():
        _apply(cfg, key, value)
    _check_values(cfg)
    return cfg
