"""Predict: a callable class for Ray Data `map_batches` (one model load per actor).

`SeriesPredictor(checkpoint, ...)` maps a block of clean series rows to long forecast rows,
un-scaling the network's output with each window's statistics. Columns (neuralforecast's naming):

    unique_id, ds, cutoff
    LSTM                          the network's point forecast (median for loss=quantile)
    LSTM-lo-80, LSTM-hi-80, ...   interval bounds for loss=quantile (sorted: they never cross)
    Naive, SeasonalNaive, Theta   baselines, computed for every series (Theta: forecaster/theta.py)
    forecast, model               the forecast to use and which model made it

`model` is the network's forecast: `LSTM+Theta` (the mean of the two, model.combine=theta, the
default) or `LSTM` (model.combine=none); unless the series is too short for the network (fewer than
horizon + 2 points: SeasonalNaive, or Naive under one season) or, with model.fallback=validation,
seasonal naive beat that forecast on the series' own held-out last `horizon` points.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.train
import torch

from forecaster.covariates import FeatureSpec, future_dates
from forecaster.evaluate import seasonal_naive
from forecaster.features import SeriesBlock, Windows, forecast_windows, validation_windows
from forecaster.model import build_model, combine
from forecaster.read import ID
from forecaster.theta import network_forecast, theta
from forecaster.train import load_best_weights
from forecaster.validate import min_length

MODEL_COLUMN = "LSTM"


def without_fallback(lstm: np.ndarray, statistical: np.ndarray, chosen: np.ndarray, combine: str) -> np.ndarray:
    """`forecast` as model.fallback=none makes it, from the output columns: the network's forecast
    wherever the network forecast (LSTM not NaN), the chosen baseline of a short series elsewhere."""
    return np.where(np.isfinite(lstm), network_forecast(lstm, statistical, combine), chosen)


class SeriesPredictor:
    def __init__(self, checkpoint: ray.train.Checkpoint | None, freq: str, season: int, horizon: int,
                 fallback: str = "none", threads: int = 1, use_gpu: bool = False,
                 combine: str = "none", progress=None, placement=None):
        """`checkpoint=None` (no series was long enough to train on): baselines only. `progress`: called
        with the number of series of each batch once it is forecast (forecaster.console.Tally).
        `placement`: a forecaster.runtime.NodeSet actor told the node this predictor runs on."""
        torch.set_num_threads(threads)
        if placement is not None:
            placement.add.remote(ray.get_runtime_context().get_node_id())
        self.progress = progress
        self.season = season
        self.fallback = fallback
        self.combine = combine
        self.model = None
        self.m = {"horizon": horizon, "quantiles": [0.5], "levels": []}
        if checkpoint is not None:
            with checkpoint.as_directory() as path:
                weights, config = load_best_weights(path)
            self.m = config["model"]
            self.model = build_model(self.m)
            self.model.load_state_dict(weights)
            self.model.eval()
            self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
            self.model.to(self.device)
        self.freq = freq

    @torch.no_grad()
    def _predict(self, w: Windows) -> np.ndarray:
        """(series, horizon, outputs) in original units; quantile outputs sorted per step."""
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in w.model_inputs().items()}
        scaled = combine(self.model(**inputs)).float().cpu().numpy().astype(np.float64)
        values = w.unscale(scaled)
        if values.shape[-1] > 1:
            order = np.argsort(self.m["quantiles"])
            values[..., order] = np.sort(values[..., order], axis=-1)  # no crossing
        return values

    def __call__(self, batch: pa.Table) -> pa.Table:
        forecasts = self._forecast(batch, self.block(batch))
        if self.progress is not None:
            self.progress(batch.num_rows)
        return forecasts

    def block(self, batch: pa.Table) -> SeriesBlock:
        """Series rows -> a SeriesBlock with the covariates the checkpoint's model reads."""
        return SeriesBlock.from_batch(batch, FeatureSpec.from_dict(self.m.get("features")))

    def _forecast(self, batch: pa.Table, block: SeriesBlock) -> pa.Table:
        h, n = self.m["horizon"], len(block)
        network = (block.lengths >= min_length(h)) & (self.model is not None)  # long enough for the LSTM
        outputs = np.full((n, h, len(self.m["quantiles"])), np.nan)
        if network.any():
            windows = forecast_windows(block.take(network), self.m["input_size"], h, self.m["scaler"],
                                       self.m.get("scaler_type", "robust"))
            outputs[network] = self._predict(windows)
        naive = seasonal_naive(block, block.lengths, h, 1)
        snaive = seasonal_naive(block, block.lengths, h, self.season)
        statistical = theta(block, block.lengths, h, self.season)
        use_lstm = network.copy()
        if self.fallback == "validation" and network.any():
            use_lstm[network] = self._lstm_wins_validation(block.take(network))
        chosen = np.where(use_lstm[:, None], network_forecast(outputs[..., 0], statistical, self.combine), snaive)
        name = "LSTM+Theta" if self.combine == "theta" else "LSTM"
        model = np.where(use_lstm, name, np.where(block.lengths >= self.season, "SeasonalNaive", "Naive"))

        last = batch["last_ds"].to_numpy(zero_copy_only=False)
        dates = future_dates(last, h, self.freq)  # (series, horizon)
        repeat = np.repeat(np.arange(n), h)
        columns = {
            ID: pc.cast(batch[ID], pa.string()).take(pa.array(repeat)),
            "ds": pa.array(dates.reshape(-1).astype("datetime64[us]")),
            MODEL_COLUMN: pa.array(outputs[..., 0].reshape(-1), from_pandas=True),
        }
        for i, level in enumerate(self.m.get("levels") or []):
            if len(self.m["quantiles"]) > 1:
                columns[f"{MODEL_COLUMN}-lo-{level}"] = pa.array(outputs[..., 1 + 2 * i].reshape(-1), from_pandas=True)
                columns[f"{MODEL_COLUMN}-hi-{level}"] = pa.array(outputs[..., 2 + 2 * i].reshape(-1), from_pandas=True)
        columns.update({
            "Naive": pa.array(naive.reshape(-1)),
            "SeasonalNaive": pa.array(snaive.reshape(-1)),
            "Theta": pa.array(statistical.reshape(-1)),
            "forecast": pa.array(chosen.reshape(-1)),
            "model": pa.array(np.repeat(model, h)),
            "cutoff": pa.array(np.repeat(last.astype("datetime64[us]"), h)),
        })
        return pa.table(columns)

    def _lstm_wins_validation(self, block: SeriesBlock) -> np.ndarray:
        """Per series: is the network forecast's MAE on the held-out last `horizon` points (the LSTM's,
        or its combination with Theta fitted on the points before them) <= seasonal naive's?"""
        h = self.m["horizon"]
        windows = validation_windows(block, self.m["input_size"], h, self.m["scaler"],
                                     self.m.get("scaler_type", "robust"))
        cutoffs = block.lengths - h
        statistical = theta(block, cutoffs, h, self.season) if self.combine == "theta" else None
        forecast = network_forecast(self._predict(windows)[..., 0], statistical, self.combine)
        actual = block.values[block.starts[:, None] + cutoffs[:, None] + np.arange(h)[None, :]]
        naive = seasonal_naive(block, cutoffs, h, self.season)
        return np.abs(actual - forecast).mean(axis=1) <= np.abs(actual - naive).mean(axis=1)
