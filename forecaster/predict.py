"""Predict: a callable class for Ray Data `map_batches` (one model load per actor).

`SeriesPredictor(checkpoint, ...)` maps a block of clean series rows to long forecast rows,
un-scaling the network's output with each window's statistics. Columns (neuralforecast's naming):

    unique_id, ds, cutoff
    LSTM                          the network's point forecast (median for loss=quantile)
    LSTM-lo-80, LSTM-hi-80, ...   interval bounds for loss=quantile (sorted: they never cross)
    Naive, SeasonalNaive, Theta, DampedTrend, SES, OptimizedTheta   baselines, computed for every series
                                  (forecaster/theta.py)
    forecast, model               the forecast to use and which model made it
    forecast-lo-80, forecast-hi-80, ...  its intervals at model.levels, calibrated on earlier runs'
                                  realised errors where there are enough, else on the validation
                                  window (forecaster/intervals.py; a series too short for the network
                                  in its own length group)

`model` is the network's forecast: `LSTM+OptimizedTheta+DampedTrend` (the mean of the LSTM and its
statistical partner, model.statistical: the mean of the optimised Theta and DampedTrend with
`otm_damped`, of Theta and SES with `theta_ses`, of Theta and DampedTrend with `theta_damped`, Theta
alone with `theta`; `auto`, the default: the one of the first two that training chose, kept in the
checkpoint (theta.resolved); model.combine=theta, the default) or `LSTM` (model.combine=none);
unless the series is too short for the network (fewer than horizon + 2 points: the partner, e.g.
`OptimizedTheta+DampedTrend`) or,
with model.fallback=validation, seasonal naive (Naive under one season) beat that forecast on the
series' own held-out last `horizon` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch

from forecaster import checkpoint as checkpoints
from forecaster import intervals
from forecaster.columns import (
    CUTOFF,
    DS,
    FORECAST,
    ID,
    LAST_DS,
    LSTM,
    MODEL,
    NAIVE,
    SEASONAL_NAIVE,
    forecast_schema,
    interval,
)
from forecaster.config import Config
from forecaster.covariates import future_dates
from forecaster.evaluate import holdout_actual, mase_scale, seasonal_naive
from forecaster.features import SeriesBlock, Windows, forecast_windows, validation_windows
from forecaster.model import build_model, inference_dtype, member_mean
from forecaster.theta import (
    SEASONALITY_LEVEL,
    STATISTICAL,
    combine_weights,
    floor_series,
    floored,
    network_forecast,
    partner,
    partner_name,
    resolved,
    statistical,
)
from forecaster.validate import min_length


def output_schema(cfg: Config) -> pa.Schema:
    """The forecasts table of this config: the LSTM's interval bounds with loss=quantile, the calibrated
    intervals of `forecast` at model.levels always."""
    return forecast_schema(cfg.model.levels if cfg.model.loss == "quantile" else (), cfg.model.levels)


def without_fallback(lstm: np.ndarray, statistical: np.ndarray, chosen: np.ndarray, weight: float,
                     floor: np.ndarray | None) -> np.ndarray:
    """`forecast` as model.fallback=none makes it, from the output columns and the LSTM's `weight` in it
    (SeriesPredictor.weight; the manifest's metrics.combine_weight): the network's forecast wherever the
    network forecast (LSTM not NaN), the chosen baseline of a short series elsewhere; floored at zero
    on the series (rows) `floor` marks (Forecasts.floor: model.nonnegative)."""
    return floored(np.where(np.isfinite(lstm), network_forecast(lstm, statistical, weight), chosen), floor)


@dataclass
class Forecasts:
    """One batch's forecasts in the series' units, series in batch order."""

    lstm: np.ndarray  # (series, horizon, outputs): the point forecast, then (lo, hi) per level; NaN: no network
    levels: tuple[int, ...]  # the interval levels of lstm's outputs
    naive: np.ndarray  # (series, horizon)
    seasonal_naive: np.ndarray
    statistical: dict[str, np.ndarray]  # column -> (series, horizon): every statistical method's (theta.statistical)
    forecast: np.ndarray  # what users are told to use
    model: np.ndarray  # (series,): which model made `forecast`
    intervals: dict[int, tuple[np.ndarray, np.ndarray]]  # level -> (lo, hi) of `forecast`, forecaster.intervals
    floor: np.ndarray | None  # (series,): `forecast` floored at zero (model.nonnegative); None: none

    def bound(self, side: str, level: int) -> np.ndarray:
        """(series, horizon): the `side` (lo, hi) of the LSTM's `level` % interval."""
        return self.lstm[..., 1 + 2 * self.levels.index(level) + (side == "hi")]


class SeriesPredictor:
    def __init__(self, checkpoint: ray.train.Checkpoint | None, freq: str, season: int, horizon: int,
                 fallback: str, combine: str, nonnegative: str, statistical: str, levels: tuple[int, ...] = (),
                 seasonality_level: float = SEASONALITY_LEVEL,
                 realised: dict | None = None, threads: int = 1, use_gpu: bool = False, progress=None,
                 placement=None, precision: str = "fp32"):
        """`checkpoint=None` (no series was long enough to train on): baselines only. `combine`:
        model.combine, how the network's forecast is made from the LSTM and its statistical partner
        (`statistical`: model.statistical; auto: the partner training chose, kept in the checkpoint, as
        checkpoint.Best.partner reads it; the first candidate without a checkpoint; self.weight: the
        LSTM's share; for fitted, the one training chose, or the mean from a checkpoint without it).
        `nonnegative`: model.nonnegative (auto: `forecast` and its bounds floored at zero for series
        never below it). `levels`: model.levels, the intervals of `forecast` (NaN where the checkpoint
        holds no calibration for a level). `seasonality_level`: model.seasonality_level, the statistical
        methods' seasonality test; the checkpoint's, where it records the one training used
        (checkpoint.Best.level). `realised`: the calibration on earlier runs' realised errors
        (intervals.realised_record; model.interval_calibration=realised): the series the network forecast
        draw their interval from it at the steps it calibrated, from the checkpoint's elsewhere.
        `progress`: called with the number of series of each batch once it is
        forecast (forecaster.console.Tally). `placement`: a forecaster.runtime.NodeSet actor told the
        node this predictor runs on. `precision`: predict.precision (bf16: the network's weights and
        inputs in bfloat16 where the device has bf16 units, model.inference_dtype; its outputs back in
        float64)."""
        torch.set_num_threads(threads)
        if placement is not None:
            placement.add.remote(ray.get_runtime_context().get_node_id())
        self.progress = progress
        self.freq, self.season, self.horizon = freq, season, horizon
        self.fallback, self.nonnegative = fallback, nonnegative
        self.statistical = resolved(statistical, None)  # auto without a checkpoint: the first candidate
        self.seasonality_level = seasonality_level
        choices = combine_weights(combine)
        self.weight = choices[0] if len(choices) == 1 else 0.5
        self.model = self.spec = None
        self.forecast_levels = tuple(levels)
        self.calibration = intervals.Calibration()  # the scaled-error quantiles and their unit's rule
        self.realised = intervals.read_realised(realised)
        if checkpoint is not None:
            with checkpoint.as_directory() as path:
                best = checkpoints.load_best(path)
            self.spec = best.spec
            self.seasonality_level = best.level(seasonality_level)
            self.statistical = best.partner(statistical)
            if len(choices) > 1 and best.combine_weight is not None:  # model.combine=fitted: what validation chose
                self.weight = best.combine_weight
            self.calibration = intervals.read(best.calibration)
            self.model = build_model(self.spec)
            self.model.load_state_dict(best.weights)
            self.model.eval()
            self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
            self.dtype = inference_dtype(precision, self.device.type)
            self.model.to(self.device, self.dtype)

    @property
    def levels(self) -> tuple[int, ...]:
        return self.spec.intervals if self.spec is not None else ()

    def __call__(self, batch: pa.Table) -> pa.Table:
        table = self.to_arrow(batch, self.forecast(batch))
        if self.progress is not None:
            self.progress(batch.num_rows)
        return table

    def block(self, batch: pa.Table) -> SeriesBlock:
        """Series rows -> a SeriesBlock with the covariates the checkpoint's model reads."""
        return SeriesBlock.from_batch(batch, self.spec.features if self.spec is not None else None)

    def network_inputs(self, windows: Windows, rows=slice(None)) -> dict[str, torch.Tensor]:
        """The network's keyword arguments for windows `rows`: on its device, floats in its dtype."""
        return {k: torch.from_numpy(v).to(self.device, self.dtype if v.dtype == np.float32 else None)
                for k, v in windows.model_inputs(rows).items()}

    @torch.no_grad()
    def _network(self, windows: Windows) -> np.ndarray:
        """(series, horizon, outputs) in original units; quantile outputs sorted per step."""
        scaled = member_mean(self.model(**self.network_inputs(windows))).float().cpu().numpy().astype(np.float64)
        values = windows.unscale(scaled)
        if values.shape[-1] > 1:
            order = np.argsort(self.spec.quantiles)
            values[..., order] = np.sort(values[..., order], axis=-1)  # no crossing
        return values

    def forecast(self, batch: pa.Table, block: SeriesBlock | None = None) -> Forecasts:
        """The forecasts of a batch of clean series rows (`block`: its SeriesBlock, if made already)."""
        block = block if block is not None else self.block(batch)
        h, n = self.horizon, len(block)
        network = (block.lengths >= min_length(h)) & (self.model is not None)  # long enough for the LSTM
        lstm = np.full((n, h, self.spec.outputs if self.spec is not None else 1), np.nan)
        if network.any():
            lstm[network] = self._network(forecast_windows(block.take(network), self.spec))
        snaive = seasonal_naive(block, block.lengths, h, self.season)
        methods = statistical(block, block.lengths, h, self.season, level=self.seasonality_level)
        stat = partner(methods, self.statistical)
        use_lstm = network.copy()
        if self.fallback == "validation" and network.any():
            use_lstm[network] = self._lstm_wins_validation(block.take(network))
        # too short for the network: the statistical partner (Theta on the M1 series cut short: 10-20 % lower
        # MASE than seasonal naive); the network's forecast lost the validation window
        # (model.fallback=validation): seasonal naive
        baseline = np.where(network[:, None], snaive, stat)
        floor = floor_series(block, block.lengths, self.nonnegative)
        chosen = floored(np.where(use_lstm[:, None], network_forecast(lstm[..., 0], stat, self.weight),
                                  baseline), floor)
        name = f"{LSTM}+{partner_name(self.statistical)}" if self.weight < 1 else LSTM
        model = np.where(use_lstm, name, np.where(~network, partner_name(self.statistical),
                                                  np.where(block.lengths >= self.season, SEASONAL_NAIVE, NAIVE)))
        bounds = {}
        if self.forecast_levels:
            scale, members = mase_scale(block, block.lengths, self.season), intervals.members(methods, lstm[..., 0])
            unit = intervals.units(scale, members, self.calibration.unit)
            realised = self.realised if self.realised is not None and use_lstm.any() else None
            realised_unit = (unit if realised is None or realised.unit == self.calibration.unit
                             else intervals.units(scale, members, realised.unit))
            for level in self.forecast_levels:
                lo, hi = intervals.bounds(chosen, unit, self.calibration.table(level, block.lengths))
                if realised is not None and level in realised.quantiles:  # its steps, the network's series
                    quantile = realised.quantiles[level][:h]
                    cells = use_lstm[:, None] & np.isfinite(quantile)[None, :]
                    rlo, rhi = intervals.bounds(chosen, realised_unit, quantile)
                    lo, hi = np.where(cells, rlo, lo), np.where(cells, rhi, hi)
                bounds[level] = (floored(lo, floor), floored(hi, floor))
        return Forecasts(lstm=lstm, levels=self.levels, naive=seasonal_naive(block, block.lengths, h, 1),
                         seasonal_naive=snaive, statistical=methods, forecast=chosen, model=model, intervals=bounds,
                         floor=floor)

    def to_arrow(self, batch: pa.Table, f: Forecasts) -> pa.Table:
        """Long forecast rows (forecast_schema): `horizon` rows per series."""
        n, h = len(f.model), self.horizon
        last = batch[LAST_DS].to_numpy(zero_copy_only=False)
        dates = future_dates(last, h, self.freq)  # (series, horizon)

        def flat(values: np.ndarray) -> pa.Array:
            return pa.array(values.reshape(-1), from_pandas=True)

        columns = {
            ID: pc.cast(batch[ID], pa.string()).take(pa.array(np.repeat(np.arange(n), h))),
            DS: pa.array(dates.reshape(-1).astype("datetime64[us]")),
            LSTM: flat(f.lstm[..., 0]),
        }
        for level in f.levels:
            columns[interval(LSTM, "lo", level)] = flat(f.bound("lo", level))
            columns[interval(LSTM, "hi", level)] = flat(f.bound("hi", level))
        columns.update({NAIVE: flat(f.naive), SEASONAL_NAIVE: flat(f.seasonal_naive),
                        **{name: flat(values) for name, values in f.statistical.items()}, FORECAST: flat(f.forecast)})
        for level, (lo, hi) in f.intervals.items():
            columns[interval(FORECAST, "lo", level)] = flat(lo)
            columns[interval(FORECAST, "hi", level)] = flat(hi)
        columns.update({MODEL: pa.array(np.repeat(f.model, h)),
                        CUTOFF: pa.array(np.repeat(last.astype("datetime64[us]"), h))})
        return pa.table(columns, schema=forecast_schema(f.levels, tuple(f.intervals)))

    def _lstm_wins_validation(self, block: SeriesBlock) -> np.ndarray:
        """Per series: is the network forecast's MAE on the held-out last `horizon` points (the LSTM's,
        or its combination with the statistical partner fitted on the points before them) <= seasonal
        naive's?"""
        h = self.horizon
        cutoffs = block.lengths - h
        stat = (partner(statistical(block, cutoffs, h, self.season, STATISTICAL[self.statistical],
                                    self.seasonality_level), self.statistical)
                if self.weight < 1 else None)
        forecast = floored(network_forecast(self._network(validation_windows(block, self.spec))[..., 0],
                                            stat, self.weight), floor_series(block, cutoffs, self.nonnegative))
        actual = holdout_actual(block, h)
        naive = seasonal_naive(block, cutoffs, h, self.season)
        return np.abs(actual - forecast).mean(axis=1) <= np.abs(actual - naive).mean(axis=1)
