"""Nobody let in: credentials given to the job never reach its outputs, checkpoints or printed output.

The job runs once through the command line with a fake secret in the environment (AWS_SECRET_ACCESS_KEY) and
two in data.storage_options (a local data.uri, so the options are accepted and never used). Every file written
under output.uri (forecasts, rejects, manifest, commit records, Ray Train's run state and checkpoints) and
everything printed (stdout, stderr of this process, Ray worker output forwarded to it, log records) is searched
for the secrets. Checkpoints must load with torch.load(weights_only=True): plain tensors and containers, no
pickled objects.
"""

from __future__ import annotations

import json
import logging
import pickle

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from forecaster.storage import resolve
from forecaster.synthetic import seasonal_series

SECRET_ENV = "FAKE-SECRET-1-env-7d41c9"
SECRET_OPT = "FAKE-SECRET-2-opt-a03be5"
SECRET_KEY_ID = "FAKE-SECRET-3-key-5f12aa"
SECRETS = (SECRET_ENV, SECRET_OPT, SECRET_KEY_ID)
DATE = "2024-05-01"


def _leaks(blob: bytes) -> list[str]:
    """The secrets found in `blob`, as UTF-8 or UTF-16 (Windows-style) text."""
    return [s for s in SECRETS if s.encode() in blob or s.encode("utf-16-le") in blob]


def test_storage_options_of_a_local_path_are_not_used():
    loc = resolve("/tmp/somewhere", {"key": SECRET_KEY_ID, "secret": SECRET_OPT})
    assert isinstance(loc.fs, pafs.LocalFileSystem)
    # the filesystem is what Ray ships to its workers (pickled): nothing of the options goes with it
    assert _leaks(pickle.dumps(loc.fs)) == [] and _leaks(repr(loc).encode()) == []


def test_credentials_are_not_put_into_ray_runtime_env():
    from forecaster.runtime import worker_env_vars

    env = {"AWS_ACCESS_KEY_ID": SECRET_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ENV, "AWS_SESSION_TOKEN": SECRET_OPT,
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "us-east-1"}
    assert _leaks(repr(worker_env_vars(env)).encode()) == []


@pytest.mark.ray
def test_no_secret_in_outputs_checkpoints_or_printed_output(ray_session, tmp_path, monkeypatch, capfd, caplog):
    import torch

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ENV)
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    pq.write_table(seasonal_series(12, (30, 40), freq="MS", seed=2), data / "part-0.parquet")
    settings = [
        f"data.uri={data}", "data.freq=MS", "model.horizon=6", f"output.uri={out}", f"run.date={DATE}",
        "train.max_epochs=1", "train.refit_epochs=0", "model.hidden_size=16", "train.windows_per_series=8",
        "train.batch_size=64",
        "train.num_workers=1",
        f"data.storage_options.key={SECRET_KEY_ID}", f"data.storage_options.secret={SECRET_OPT}",
    ]
    args = [a for s in settings for a in ("--set", s)]
    caplog.set_level(logging.DEBUG, logger="forecaster")

    assert main(["config", *args]) == 0
    assert main(["run", *args]) == 0

    printed = capfd.readouterr()
    text = printed.out + printed.err + caplog.text
    assert "series: 12 input" in printed.out  # the summary really was printed (and captured)
    assert _leaks(text.encode()) == []

    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"model.pt", "config.json", f"forecast_date={DATE}.json"} <= names, names
    assert any(p.suffix == ".parquet" for p in files)
    leaked = {str(p.relative_to(out)): found for p in files if (found := _leaks(p.read_bytes()))}
    assert leaked == {}

    manifest = json.loads((out / "manifests" / f"forecast_date={DATE}.json").read_text())
    assert manifest["config"]["data"]["storage_options"] == {"key": "***", "secret": "***"}

    checkpoints = list(out.rglob("model.pt"))
    assert checkpoints
    for path in checkpoints:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # raises on any pickled object
        assert saved["model"] and all(isinstance(v, torch.Tensor) for v in saved["model"].values())
