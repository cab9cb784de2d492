import pytest
import torch
from torch import nn

from forecaster.covariates import FeatureSpec
from forecaster.model import LSTMForecaster, build_model, masked_loss
from forecaster.spec import quantiles_for
from tests.specs import model_spec


def _model(**kw):
    torch.manual_seed(0)
    args = dict(input_features=2, horizon=5, hidden_size=8, num_layers=2, dropout=0.0)
    args.update(kw)
    return LSTMForecaster(**args).eval()


@pytest.mark.parametrize("batch,time,features,horizon,outputs", [(1, 1, 2, 1, 1), (3, 10, 2, 5, 1), (7, 24, 4, 12, 3)])
def test_output_shape(batch, time, features, horizon, outputs):
    model = _model(input_features=features, horizon=horizon, outputs=outputs)
    out = model(torch.randn(batch, time, features))
    assert out.shape == (batch, horizon, outputs)


def test_encoder_is_batch_first():
    assert _model().encoder.batch_first is True


def test_samples_do_not_leak_into_each_other():
    """Fails if the LSTM reads dim 0 as time (nn.LSTM without batch_first=True)."""
    model = _model()
    x = torch.randn(4, 10, 2)
    base = model(x)
    changed = x.clone()
    changed[0] += 10.0  # perturb only the first sample
    out = model(changed)
    assert not torch.allclose(out[0], base[0])
    torch.testing.assert_close(out[1:], base[1:])


def test_output_depends_on_order_in_time():
    """The recurrence runs over axis 1: reversing time changes the forecast."""
    model = _model()
    x = torch.randn(2, 10, 2)
    assert not torch.allclose(model(x), model(torch.flip(x, dims=[1])))


def test_without_batch_first_the_leak_test_fails():
    """The leak test above can fail: a time-major LSTM on batch-major input mixes samples."""
    model = _model()
    model.encoder = nn.LSTM(2, 8, num_layers=2, batch_first=False)
    x = torch.randn(4, 10, 2)
    base = model(x)
    changed = x.clone()
    changed[0] += 10.0
    assert not torch.allclose(model(changed)[1:], base[1:])


def test_the_default_config_builds_its_model():
    """The default model reads calendar features (2 per step for monthly data) and has the linear skip."""
    spec = model_spec("model.horizon=6", "model.input_size=12", "model.hidden_size=16")
    model = build_model(spec)
    assert model.encoder.input_size == 2 + 2 and model.skip is not None
    assert model(torch.zeros(2, 12, 4), future=torch.zeros(2, 6, 2)).shape == (2, 6, 1)


def test_linear_skip_is_built_from_config():
    spec = model_spec("model.horizon=6", "model.input_size=12", "model.hidden_size=16", features=FeatureSpec())
    assert build_model(spec.__class__.from_dict({**spec.to_dict(), "skip": "none"})).skip is None
    skip = build_model(model_spec("model.horizon=6", "model.input_size=12", "model.loss=quantile",
                                  "model.levels=[80]")).skip
    assert (skip.in_features, skip.out_features) == (12, 6 * 3)


def test_linear_skip_adds_a_linear_map_of_the_scaled_values():
    """With the LSTM's head silenced, the output is the skip alone: here seasonal naive (season 4)
    read from the value channel x[..., 0] along the time axis; the mask channel plays no part."""
    horizon, season, time = 6, 4, 12
    model = _model(horizon=horizon, input_size=time)
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
        model.skip.bias.zero_()
        model.skip.weight.zero_()
        for k in range(horizon):
            model.skip.weight[k, time - season + k % season] = 1.0
    x = torch.randn(3, time, 2)
    expected = torch.stack([x[:, time - season + k % season, 0] for k in range(horizon)], dim=1)
    torch.testing.assert_close(model(x)[..., 0], expected)


def test_samples_do_not_leak_through_the_skip():
    model = _model(input_size=10)
    x = torch.randn(4, 10, 2)
    changed = x.clone()
    changed[0] += 10.0
    torch.testing.assert_close(model(changed)[1:], model(x)[1:])


def test_masked_loss_ignores_unobserved_steps():
    pred = torch.tensor([[1.0, 2.0, 100.0]])[..., None]  # (batch, horizon, outputs)
    target = torch.tensor([[0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_loss(pred, target, mask, "mae").item() == pytest.approx(1.5)
    assert masked_loss(pred, target, mask, "mse").item() == pytest.approx(2.5)


def test_pinball_loss_per_quantile():
    quantiles = quantiles_for([80])  # 0.5, 0.1, 0.9
    assert quantiles == pytest.approx([0.5, 0.1, 0.9])
    target = torch.tensor([[10.0]])
    pred = torch.tensor([[[10.0, 12.0, 12.0]]])  # median exact; both bounds 2 above the target
    # errors y - q_hat: 0, -2, -2 -> losses 0, (0.1-1)*-2 = 1.8, (0.9-1)*-2 = 0.2; mean 2/3
    loss = masked_loss(pred, target, torch.ones(1, 1), "quantile", quantiles)
    assert loss.item() == pytest.approx(2.0 / 3.0)


BF16_FALLBACK_SCRIPT = """
import numpy as np, torch
from forecaster.covariates import FeatureSpec
from forecaster.features import SeriesBlock, training_windows
from forecaster.model import bf16_supported, build_model
from forecaster.train import train_step
from tests.specs import model_spec
spec = model_spec("model.horizon=4", "model.input_size=8", "model.hidden_size=16", features=FeatureSpec())
model = build_model(spec)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
w = training_windows(SeriesBlock([np.sin(np.arange(60) / 2) * 10 + 50] * 8), spec, 8, np.random.default_rng(0))
loss = train_step(model, optimizer, w, np.arange(len(w)), spec, torch.device("cpu"), "bf16")
print("SUPPORTED", bf16_supported("cpu"), "LOSS", np.isfinite(loss))
"""


@pytest.mark.slow
def test_bf16_on_a_cpu_without_it_trains_in_fp32_with_a_warning():
    """What CI's CPU did: oneDNN capped below the bf16 instructions refuses the bf16 LSTM primitive. The
    probe says so once, and train_step runs in fp32 instead of failing."""
    import os
    import pathlib
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", BF16_FALLBACK_SCRIPT], capture_output=True, text=True, timeout=120,
                          cwd=pathlib.Path(__file__).resolve().parents[1],
                          env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUPPORTED False LOSS True" in done.stdout
    assert done.stderr.count("cannot run the LSTM in bfloat16") == 1 and "training in fp32" in done.stderr


@pytest.mark.parametrize("precision, units, supported, expected", [
    ("bf16", True, True, True),
    ("bf16", False, True, False),  # emulated bf16 (no bf16 units) is slower than fp32: stay in fp32
    ("bf16", True, False, False),  # the LSTM primitive fails in bf16 here
    ("fp32", True, True, False),
])
def test_training_autocasts_to_bf16_only_where_the_device_computes_it(monkeypatch, precision, units, supported,
                                                                      expected):
    from forecaster import model as model_module

    monkeypatch.setattr(model_module, "bf16_units", lambda device_type: units)
    monkeypatch.setattr(model_module, "bf16_supported", lambda device_type: supported)
    assert model_module.autocast_bf16(precision, "cpu") is expected


def test_bf16_train_step_runs_and_learns():
    """The bf16 autocast path of train_step (CPU here; the same code runs under CUDA). On a CPU without
    bf16 LSTM support (bf16_supported false) the same call trains in fp32 instead of failing."""
    import numpy as np

    from forecaster.features import SeriesBlock, training_windows
    from forecaster.train import train_step

    spec = model_spec("model.horizon=4", "model.input_size=8", "model.hidden_size=16", features=FeatureSpec())
    torch.manual_seed(0)
    model = build_model(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    block = SeriesBlock([np.sin(np.arange(60) / 2) * 10 + 50 for _ in range(8)])
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(30):
        w = training_windows(block, spec, 8, rng)
        losses.append(train_step(model, optimizer, w, np.arange(len(w)), spec, torch.device("cpu"), "bf16"))
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
