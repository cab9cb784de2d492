"""What a trained model is, typed, once: `ModelSpec` (the network and its inputs, saved in every
checkpoint and read back by the predictor) and `LoopSettings` (how the training loop runs).

`ModelSpec.from_config` is where a config becomes a model; `ModelSpec.from_dict` is the one place
that reads a saved spec, and the only place that fills what older checkpoints lack (LEGACY). No
other module has a default for these values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from forecaster.config import Config, ConfigError
from forecaster.covariates import FeatureSpec, feature_spec


def quantiles_for(levels: tuple[int, ...] | list[int]) -> tuple[float, ...]:
    """Output quantiles: the median first, then (lo, hi) for each interval level in percent."""
    out = [0.5]
    for level in levels:
        tail = (1 - level / 100) / 2
        out += [tail, 1 - tail]
    return tuple(out)


@dataclass(frozen=True)
class ModelSpec:
    horizon: int
    input_size: int
    hidden_size: int
    num_layers: int
    dropout: float
    loss: str  # mae | mse | quantile
    scaler: str  # window | series
    scaler_type: str  # robust | standard | minmax | none
    season: int
    quantiles: tuple[float, ...] = (0.5,)  # outputs of the network: the median, then (lo, hi) per level
    levels: tuple[int, ...] = ()  # interval levels in percent (loss=quantile)
    ensemble_size: int = 1
    skip: str = "none"  # none | linear
    features: FeatureSpec = field(default_factory=FeatureSpec)

    # what the weights' shapes depend on: a checkpoint that differs in one of these cannot be loaded
    ARCHITECTURE = ("horizon", "input_size", "hidden_size", "num_layers", "quantiles", "features", "ensemble_size",
                    "skip")
    # saved specs from before a key existed: what those models were trained with
    LEGACY = {"quantiles": (0.5,), "levels": (), "scaler_type": "robust", "ensemble_size": 1, "skip": "none",
              "features": FeatureSpec()}

    @classmethod
    def from_config(cls, cfg: Config, features: FeatureSpec | None = None) -> ModelSpec:
        """The model this config trains; `features`: the covariates it reads (default: what the config
        names, without the input's schema: calendar features only)."""
        quantile = cfg.model.loss == "quantile"
        return cls(horizon=cfg.model.horizon, input_size=cfg.input_size, hidden_size=cfg.model.hidden_size,
                   num_layers=cfg.model.num_layers, dropout=cfg.model.dropout, loss=cfg.model.loss,
                   scaler=cfg.model.scaler, scaler_type=cfg.model.scaler_type, season=cfg.season,
                   quantiles=quantiles_for(cfg.model.levels) if quantile else (0.5,),
                   levels=tuple(cfg.model.levels) if quantile else (), ensemble_size=cfg.model.ensemble_size,
                   skip=cfg.model.skip, features=features or feature_spec(cfg))

    @property
    def outputs(self) -> int:
        return len(self.quantiles)

    @property
    def intervals(self) -> tuple[int, ...]:
        """The levels the network has interval outputs for (none unless it was trained on quantiles)."""
        return self.levels if self.outputs > 1 else ()

    @property
    def skip_inputs(self) -> int:
        """Inputs of the linear skip (0: no skip)."""
        return self.input_size if self.skip == "linear" else 0

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**out, "quantiles": list(self.quantiles), "levels": list(self.levels),
                "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, saved: dict) -> ModelSpec:
        """A saved spec (config.json's `model`), older ones filled from LEGACY; keys of other versions
        that the network does not read are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {**cls.LEGACY, **{k: v for k, v in saved.items() if k in known}}
        missing = known - set(values)
        if missing:
            raise ValueError(f"saved model spec lacks {', '.join(sorted(missing))}")
        features = values["features"]
        values["features"] = features if isinstance(features, FeatureSpec) else FeatureSpec.from_dict(features)
        values["quantiles"] = tuple(values["quantiles"] or (0.5,))
        values["levels"] = tuple(values["levels"] or ())
        return cls(**values)

    def check_same_architecture(self, saved: ModelSpec, what: str) -> None:
        """ConfigError naming the first ARCHITECTURE key where `saved` (described by `what`) differs."""
        value, wanted = saved.to_dict(), self.to_dict()  # as config.json shows them
        for key in self.ARCHITECTURE:
            if value[key] != wanted[key]:
                raise ConfigError(f"{what} has model {key}={value[key]}, this run has {wanted[key]}")


def validation_share(cfg: Config, series: int | None) -> float:
    """The share of series validation scores (train.max_validation_series over the series count; 1: all)."""
    cap = cfg.train.max_validation_series
    if cap is None or not series or series <= cap:
        return 1.0
    return cap / series


def windows_per_series(cfg: Config, series: int | None) -> float:
    """Training windows per series and epoch: train.windows_per_series, or fewer (a fraction: each series
    gets the whole part or one more, at random) where `series` x that would pass train.max_windows_per_epoch.
    The epoch's cost then stays bounded however many series a nightly run brings."""
    wanted, cap = cfg.train.windows_per_series, cfg.train.max_windows_per_epoch
    if cap is None or not series or series * wanted <= cap:
        return wanted
    return cap / series


@dataclass(frozen=True)
class LoopSettings:
    """How the training loop runs (not part of the model: a checkpoint records them for reading only)."""

    max_epochs: int
    warm_epochs: int
    patience: int
    batch_size: int
    windows_per_series: float  # per series and epoch: train.windows_per_series, fewer under train.max_windows_per_epoch
    series_per_block: int
    learning_rate: float
    ema_decay: float
    seed: int
    threads: int
    precision: str
    combine: str  # model.combine: validation scores the forecast as the predictor makes it
    nonnegative: str  # model.nonnegative: likewise
    statistical: str  # model.statistical: the LSTM's partner in `forecast`, likewise
    seasonality_level: float  # model.seasonality_level: the statistical methods' seasonality test, likewise
    worst_series: int  # report.worst_series: the series validation names for the report
    diagnostics: bool
    levels: tuple[int, ...]  # model.levels: the intervals of `forecast` calibrated on validation (intervals.py)
    interval_unit: str  # model.interval_unit: the unit they are calibrated in (intervals.units)
    refit_epochs: int  # train.refit_epochs: epochs on whole series after early stopping
    loss_weight: str  # train.loss_weight: mase weighs each window's errors by 1 / its MASE scale
    recent_horizons: float | None  # train.recent_horizons: windows' cutoffs in the last this many horizons
    validation_share: float  # of the series, validated on (train.max_validation_series; 1: all)

    @classmethod
    def from_config(cls, cfg: Config, series: int | None = None) -> LoopSettings:
        """The loop's settings for training on `series` series (None: as many as train.windows_per_series
        allows under any cap)."""
        t = cfg.train
        return cls(max_epochs=t.max_epochs, warm_epochs=t.warm_epochs, patience=t.patience, batch_size=t.batch_size,
                   windows_per_series=windows_per_series(cfg, series), series_per_block=t.series_per_block,
                   learning_rate=t.learning_rate, ema_decay=t.ema_decay, seed=t.seed,
                   threads=max(1, int(t.cpus_per_worker)), precision=t.precision, combine=cfg.model.combine,
                   nonnegative=cfg.model.nonnegative, statistical=cfg.model.statistical,
                   seasonality_level=cfg.model.seasonality_level,
                   worst_series=cfg.report.worst_series, diagnostics=t.diagnostics, levels=tuple(cfg.model.levels),
                   interval_unit=cfg.model.interval_unit, refit_epochs=t.refit_epochs,
                   validation_share=validation_share(cfg, series), loss_weight=t.loss_weight,
                   recent_horizons=t.recent_horizons)

    def recent_points(self, horizon: int) -> int | None:
        """train.recent_horizons in points of a series (None: no limit)."""
        return None if self.recent_horizons is None else int(self.recent_horizons * horizon)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
