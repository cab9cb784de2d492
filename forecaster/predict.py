"""Predict: a callable class for Ray Data `map_batches` (one model load per actor).

`SeriesPredictor(checkpoint, ...)` maps a block of clean series rows to long forecast rows
(unique_id, ds, LSTM, cutoff), un-scaling the network's output with each window's statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray.train
import torch

from forecaster.features import SeriesBlock, Windows, forecast_windows
from forecaster.model import build_model
from forecaster.read import ID, Y
from forecaster.train import load_best_weights

MODEL_COLUMN = "LSTM"


class SeriesPredictor:
    def __init__(self, checkpoint: ray.train.Checkpoint, freq: str, threads: int = 1, use_gpu: bool = False):
        torch.set_num_threads(threads)
        with checkpoint.as_directory() as path:
            weights, config = load_best_weights(path)
        self.m = config["model"]
        self.model = build_model(self.m)
        self.model.load_state_dict(weights)
        self.model.eval()
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.offset = pd.tseries.frequencies.to_offset(freq)

    @torch.no_grad()
    def _predict(self, w: Windows) -> np.ndarray:
        x = torch.from_numpy(w.features()).to(self.device)
        scaled = self.model(x)[..., 0].float().cpu().numpy().astype(np.float64)
        return w.unscale(scaled)  # (series, horizon)

    def __call__(self, batch: pa.Table) -> pa.Table:
        column = batch[Y].combine_chunks() if isinstance(batch[Y], pa.ChunkedArray) else batch[Y]
        block = SeriesBlock(column.values.to_numpy(zero_copy_only=False), column.offsets.to_numpy())
        return self._forecast(batch, block)

    def _forecast(self, batch: pa.Table, block: SeriesBlock) -> pa.Table:
        horizon = self.m["horizon"]
        values = self._predict(forecast_windows(block, self.m["input_size"], horizon, self.m["scaler"]))
        last = batch["last_ds"].to_numpy(zero_copy_only=False)
        dates = self._future_dates(last, horizon)  # (series, horizon)
        ids = pc.cast(batch[ID], pa.string())
        repeat = np.repeat(np.arange(batch.num_rows), horizon)
        return pa.table({
            ID: ids.take(pa.array(repeat)),
            "ds": pa.array(dates.reshape(-1).astype("datetime64[us]")),
            MODEL_COLUMN: pa.array(values.reshape(-1)),
            "cutoff": pa.array(np.repeat(last.astype("datetime64[us]"), horizon)),
        })

    def _future_dates(self, last: np.ndarray, horizon: int) -> np.ndarray:
        """The `horizon` dates after each last date, computed once per distinct last date."""
        unique, inverse = np.unique(last, return_inverse=True)
        table = np.stack([
            pd.date_range(pd.Timestamp(u), periods=horizon + 1, freq=self.offset)[1:].to_numpy()
            for u in unique
        ]) if len(unique) else np.zeros((0, horizon), dtype="datetime64[ns]")
        return table[inverse.reshape(-1)]
