"""The network only: an LSTM encoder and a direct multi-step head. No I/O, no Ray."""

from __future__ import annotations

import torch
from torch import nn


class LSTMForecaster(nn.Module):
    """Global LSTM forecaster: reads an input window, emits all `horizon` steps at once.

    x: (batch, time, features) -> (batch, horizon, outputs)
    """

    def __init__(self, input_features: int, horizon: int, hidden_size: int = 64, num_layers: int = 2,
                 dropout: float = 0.1, outputs: int = 1):
        super().__init__()
        self.horizon = horizon
        self.outputs = outputs
        # batch_first=True: without it nn.LSTM reads dim 0 as time and silently mixes the batch.
        self.encoder = nn.LSTM(
            input_size=input_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, horizon * outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded, _ = self.encoder(x)  # (batch, time, hidden)
        last = encoded[:, -1, :]  # (batch, hidden): state after the last input step
        out = self.head(last)  # (batch, horizon * outputs)
        return out.view(x.shape[0], self.horizon, self.outputs)


def build_model(model_cfg: dict) -> LSTMForecaster:
    """Model from the `model` section of a config dict (as stored in checkpoints)."""
    return LSTMForecaster(
        input_features=2,  # scaled value, observed mask
        horizon=model_cfg["horizon"],
        hidden_size=model_cfg["hidden_size"],
        num_layers=model_cfg["num_layers"],
        dropout=model_cfg["dropout"],
    )


def masked_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean of |e| (mae) or e^2 (mse) over observed target steps. All (batch, horizon)."""
    error = prediction - target
    per_step = error.abs() if kind == "mae" else error.pow(2)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)
