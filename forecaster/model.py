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


def quantiles_for(levels: list[int]) -> list[float]:
    """Output quantiles: the median first, then (lo, hi) for each interval level in percent."""
    out = [0.5]
    for level in levels:
        tail = (1 - level / 100) / 2
        out += [tail, 1 - tail]
    return out


def build_model(model_cfg: dict) -> LSTMForecaster:
    """Model from the `model` section of a config dict (as stored in checkpoints)."""
    return LSTMForecaster(
        input_features=2,  # scaled value, observed mask
        horizon=model_cfg["horizon"],
        hidden_size=model_cfg["hidden_size"],
        num_layers=model_cfg["num_layers"],
        dropout=model_cfg["dropout"],
        outputs=len(model_cfg.get("quantiles") or [0.5]),
    )


def masked_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str,
                quantiles: list[float] | None = None) -> torch.Tensor:
    """Mean loss over observed target steps.

    prediction: (batch, horizon, outputs); target, mask: (batch, horizon). mae and mse score
    output 0; quantile is the pinball loss of every output against its quantile.
    """
    return per_step_loss(prediction, target, kind, quantiles).mul(mask).sum() / mask.sum().clamp_min(1.0)


def per_step_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str,
                  quantiles: list[float] | None = None) -> torch.Tensor:
    """(batch, horizon) loss before masking."""
    if kind == "quantile":
        q = torch.tensor(quantiles, dtype=prediction.dtype, device=prediction.device)  # (outputs,)
        error = target.unsqueeze(-1) - prediction  # (batch, horizon, outputs)
        return torch.maximum(q * error, (q - 1) * error).mean(dim=-1)
    error = prediction[..., 0] - target
    return error.abs() if kind == "mae" else error.pow(2)
