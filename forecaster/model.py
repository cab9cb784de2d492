"""The network only: an LSTM encoder and a direct multi-step head. No I/O, no Ray."""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn

from forecaster.spec import ModelSpec

log = logging.getLogger(__name__)


class LSTMForecaster(nn.Module):
    """Global LSTM forecaster: reads an input window, emits all `horizon` steps at once.

    x: (batch, time, input_features) -> (batch, horizon, outputs)

    Optional inputs of the head (direct multi-step: it sees them all at once):
    future: (batch, horizon, future_features) known-ahead covariates of the forecast steps;
    static_num: (batch, static_numeric); static_cat: (batch, static_categorical) hash buckets,
    looked up in one shared embedding table of `static_buckets` x `static_dim`.
    """

    def __init__(self, input_features: int, horizon: int, hidden_size: int, num_layers: int, dropout: float,
                 outputs: int = 1, future_features: int = 0, static_numeric: int = 0, static_categorical: int = 0,
                 static_buckets: int = 0, static_dim: int = 0, input_size: int = 0):
        super().__init__()
        self.horizon = horizon
        self.outputs = outputs
        self.embedding = nn.Embedding(static_buckets, static_dim) if static_categorical else None
        head_inputs = hidden_size + horizon * future_features + static_numeric + static_categorical * static_dim
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
            nn.Linear(head_inputs, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, horizon * outputs),
        )
        # linear skip from the scaled input values to every output (LSTNet's autoregressive
        # "highway"): level, trend and season carried over linearly; the LSTM learns the rest
        self.skip = nn.Linear(input_size, horizon * outputs) if input_size else None

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None, static_num: torch.Tensor | None = None,
                static_cat: torch.Tensor | None = None) -> torch.Tensor:
        encoded, _ = self.encoder(x)  # (batch, time, hidden)
        parts = [encoded[:, -1, :]]  # (batch, hidden): state after the last input step
        if future is not None:
            parts.append(future.flatten(1).to(parts[0].dtype))  # (batch, horizon * future_features)
        if static_num is not None:
            parts.append(static_num.to(parts[0].dtype))
        if static_cat is not None:
            parts.append(self.embedding(static_cat).flatten(1).to(parts[0].dtype))  # (batch, cat * dim)
        out = self.head(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0])  # (batch, horizon * outputs)
        if self.skip is not None:
            out = out + self.skip(x[..., 0])  # x[..., 0]: the scaled values (0 where unobserved)
        return out.view(x.shape[0], self.horizon, self.outputs)


class EnsembleForecaster(nn.Module):
    """`size` LSTMForecasters from different initial weights (model.ensemble_size), trained side by
    side on the same windows; each keeps its own loss, the forecast is their mean.

    forward(...) -> (members, batch, horizon, outputs); `member_mean` takes the mean over members.
    """

    def __init__(self, members: list[LSTMForecaster]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, **inputs) -> torch.Tensor:
        return torch.stack([member(x, **inputs) for member in self.members])


def member_mean(prediction: torch.Tensor) -> torch.Tensor:
    """(batch, horizon, outputs) from a single network's or an ensemble's output."""
    return prediction.mean(dim=0) if prediction.dim() == 4 else prediction


def build_model(spec: ModelSpec) -> nn.Module:
    """The network of `spec`: one LSTMForecaster, or an EnsembleForecaster of `spec.ensemble_size`."""
    if spec.ensemble_size > 1:
        return EnsembleForecaster([_build_network(spec) for _ in range(spec.ensemble_size)])
    return _build_network(spec)


def _build_network(spec: ModelSpec) -> LSTMForecaster:
    features = spec.features
    return LSTMForecaster(
        input_features=2 + features.step_features,  # scaled value, observed mask, covariates
        horizon=spec.horizon,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        dropout=spec.dropout,
        outputs=spec.outputs,
        future_features=features.horizon_features,
        static_numeric=len(features.static_numeric),
        static_categorical=len(features.static_categorical),
        static_buckets=features.static_buckets,
        static_dim=features.static_dim,
        input_size=spec.skip_inputs,
    )


def masked_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str,
                quantiles: list[float] | None = None) -> torch.Tensor:
    """Mean loss over observed target steps.

    prediction: ([members,] batch, horizon, outputs); target, mask: (batch, horizon). mae and mse
    score output 0; quantile is the pinball loss of every output against its quantile. An
    ensemble's loss is the mean of its members' losses (each member learns on its own).
    """
    loss = per_step_loss(prediction, target, kind, quantiles)
    if loss.dim() == 3:
        loss = loss.mean(dim=0)
    return loss.mul(mask).sum() / mask.sum().clamp_min(1.0)


def per_step_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str,
                  quantiles: list[float] | None = None) -> torch.Tensor:
    """(batch, horizon) loss before masking."""
    if kind == "quantile":
        q = torch.tensor(quantiles, dtype=prediction.dtype, device=prediction.device)  # (outputs,)
        error = target.unsqueeze(-1) - prediction  # (batch, horizon, outputs)
        return torch.maximum(q * error, (q - 1) * error).mean(dim=-1)
    error = prediction[..., 0] - target
    return error.abs() if kind == "mae" else error.pow(2)


@functools.cache
def bf16_supported(device_type: str) -> bool:
    """Whether this machine runs an LSTM forward and backward under bfloat16 autocast.

    CUDA asks the driver. On a CPU, oneDNN builds the bf16 LSTM primitive only where the processor has
    the instructions for it; elsewhere the forward fails with "could not create a primitive descriptor
    for the LSTM forward propagation primitive", so a tiny LSTM is tried once per process.
    """
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        lstm = nn.LSTM(4, 4, batch_first=True)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out, _ = lstm(torch.ones(2, 3, 4))
        out.float().sum().backward()
    except RuntimeError as err:
        log.warning("train.precision=bf16: this %s cannot run the LSTM in bfloat16 (%s); training in fp32",
                    device_type, str(err).splitlines()[0])
        return False
    return True


def bf16_units(device_type: str) -> bool:
    """Whether the device computes in bfloat16 natively (CUDA: the driver says so; CPU: oneDNN's bf16
    kernels, e.g. AVX-512 BF16 or AMX); elsewhere bf16 weights are emulated and slower than fp32."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def inference_dtype(precision: str, device_type: str) -> torch.dtype:
    """The predictor's weights' dtype for predict.precision (bf16: bfloat16 where the device has bf16
    units, float32 elsewhere)."""
    return torch.bfloat16 if precision == "bf16" and bf16_units(device_type) else torch.float32


def autocast_bf16(precision: str, device_type: str) -> bool:
    """True where `precision` asks for bf16, the device computes in it natively (bf16_units: elsewhere bf16
    is emulated and slower than fp32) and runs the LSTM in it (bf16_supported); fp32 otherwise."""
    return precision == "bf16" and bf16_units(device_type) and bf16_supported(device_type)
