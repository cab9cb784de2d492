"""`forecaster tune`: the search space, the best config written, and one tiny search through Ray Tune."""

import json
import random
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from forecaster.config import load_config
from forecaster.synthetic import seasonal_series
from forecaster.tune import (
    INPUT_HORIZONS,
    TrialRow,
    TuneOutcome,
    _TrialRecorder,
    apply_params,
    current_params,
    search_space,
    summary_lines,
    write_config,
)

HORIZON = 6


def _cfg(*extra):
    return load_config(None, [f"model.horizon={HORIZON}", "data.freq=MS", *extra])


def _check_applied(cfg, params):
    for key, value in params.items():
        if key == INPUT_HORIZONS:
            assert cfg.model.input_size == round(value * cfg.model.horizon)
        else:
            section, name = key.split(".")
            assert getattr(getattr(cfg, section), name) == pytest.approx(value), key


def test_every_sample_of_the_search_space_is_a_valid_config():
    cfg = _cfg()
    space = search_space()
    assert set(space) == {"model.hidden_size", "model.num_layers", "model.dropout", "train.learning_rate",
                          "train.windows_per_series", INPUT_HORIZONS}
    rng = random.Random(0)
    for _ in range(30):
        params = {key: domain.sample(random_state=rng.randrange(2**31)) for key, domain in space.items()}
        tuned = apply_params(cfg, params)  # validated by config_from_dict
        _check_applied(tuned, params)
        assert tuned.model.input_size % HORIZON == 0
        assert 1e-4 <= tuned.train.learning_rate <= 1e-2 and 0 <= tuned.model.dropout <= 0.3
        assert cfg.model.input_size is None  # the original is left alone


def test_the_current_values_reproduce_the_config():
    cfg = _cfg("model.hidden_size=48", "train.learning_rate=0.003")
    baseline = apply_params(cfg, current_params(cfg))
    assert baseline.input_size == cfg.input_size
    baseline.model.input_size = None  # the one key made explicit
    assert baseline.to_dict(redact=False) == cfg.to_dict(redact=False)


def test_best_config_file_loads_with_the_chosen_values_and_no_credentials(tmp_path):
    cfg = _cfg("data.storage_options.secret=hunter2", "run.date=2024-06-01", "train.warm_start=latest")
    params = {"model.hidden_size": 128, "model.num_layers": 3, "model.dropout": 0.123456789,
              "train.learning_rate": 0.000123456789, "train.windows_per_series": 16, INPUT_HORIZONS: 3}
    path = tmp_path / "best.yaml"
    write_config(apply_params(cfg, params), str(path), header="best trial x\nsecond line")
    text = path.read_text()
    assert text.startswith("# best trial x\n# second line\n")
    assert "hunter2" not in text and "storage_options" not in text
    loaded = load_config(str(path))
    _check_applied(loaded, params)
    assert loaded.model.dropout == 0.123456789 and loaded.train.learning_rate == 0.000123456789  # no rounding
    assert loaded.run.date is None and loaded.data.storage_options == {}
    expected = apply_params(cfg, params).to_dict(redact=False)
    expected["run"]["date"], expected["data"]["storage_options"] = None, {}
    assert loaded.to_dict(redact=False) == expected  # every other key as it was, warm_start included


def test_recorder_tells_asha_stops_from_trials_that_ran_out():
    """Fewer epochs than the cap and not train.patience's stop (its last epoch `patience` after its best):
    ASHA stopped the trial, whether or not Tune's `done` flag reached the callbacks."""
    recorder = _TrialRecorder(max_epochs=4, patience=2)
    # (trial, best epoch after each epoch, done flag on each result)
    for trial_id, bests, dones in (("stopped", [0, 1], [False, True]), ("stopped_unflagged", [0, 1], [False, False]),
                                   ("ran_out", [0, 1, 2, 3], [False, False, False, True]),
                                   ("patience", [0, 0, 0], [False, False, False])):
        trial = SimpleNamespace(trial_id=trial_id, config={"model.hidden_size": 32})
        recorder.on_trial_start(0, [], trial)
        for epoch, (best, done) in enumerate(zip(bests, dones, strict=True)):
            recorder.on_trial_result(0, [], trial, {"val_loss": 1.0 / (epoch + 1), "done": done, "epoch": epoch,
                                                    "best_epoch": best, "val_mase_lstm": 2.0 / (epoch + 1)})
        recorder.on_trial_complete(0, [], trial)
    rows = recorder.rows
    assert rows["stopped"].stopped_early and rows["stopped"].val_losses == [1.0, 0.5]
    assert rows["stopped_unflagged"].stopped_early
    assert not rows["ran_out"].stopped_early and rows["ran_out"].best_val_loss == pytest.approx(1 / 4)
    assert not rows["patience"].stopped_early and rows["ran_out"].val_mase == pytest.approx(2 / 4)


def test_summary_lists_trials_best_first_with_the_cost():
    params = {key: 1 for key in search_space()}
    rows = [TrialRow("b", params, [0.9, 0.8], val_mase=1.1, seconds=12.0, stopped_early=True),
            TrialRow("a", params, [0.7, 0.5], val_mase=0.9, seconds=20.0),
            TrialRow("c", params, [], seconds=3.0, error="ValueError: boom")]
    outcome = TuneOutcome(rows, rows[1], _cfg(), rows[0], 5.0, 35.0, "out/tune/x")
    lines = summary_lines(outcome)
    assert lines[0].split()[:2] == ["trial", "hidden"]
    assert lines[1].startswith("a *") and lines[2].startswith("b =") and lines[3].startswith("c ")
    assert lines[1].split()[-4:] == ["0.5000", "0.900", "20.0", "completed"] and lines[2].endswith("ASHA stop")
    assert lines[3].endswith("error: ValueError: boom")
    cost = next(line for line in lines if line.startswith("cost:"))
    assert "40.0 s" in cost and "3 trials run, 1 stopped early by ASHA, 1 failed; 4 epochs" in cost


def test_tune_refuses_an_out_directory_that_does_not_exist(tmp_path, capsys):
    assert main(["tune", "--out", str(tmp_path / "missing" / "best.yaml")]) == 2
    assert "--out" in capsys.readouterr().err


def _tune_records(experiment):
    """Tune's own records: trial id -> (params, val_loss of every epoch)."""
    records = {}
    for trial_dir in experiment.glob("trial-*"):
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]
        params = json.loads((trial_dir / "params.json").read_text())
        records[results[0]["trial_id"]] = (params, [r["val_loss"] for r in results])
    return records


@pytest.mark.ray
def test_tiny_search_writes_the_trial_with_the_lowest_val_loss(ray_session, tmp_path, capsys):
    data, out, best = tmp_path / "series.parquet", tmp_path / "out", tmp_path / "best.yaml"
    pq.write_table(seasonal_series(24, (40, 60), seed=5, noise=0.05), data)
    code = main(["tune", "--trials", "2", "--out", str(best), "--set", f"data.uri={data}", "--set", f"output.uri={out}",
                 "--set", f"model.horizon={HORIZON}", "--set", "tune.max_epochs=2", "--set", "train.patience=5",
                 "--set", "tune.grace_period=1", "--set", "train.batch_size=64", "--set", "run.date=2024-06-01",
                 "--set", "train.num_workers=1"])
    printed = capsys.readouterr().out
    assert code == 0

    (experiment,) = (out / "tune").iterdir()
    records = _tune_records(experiment)
    assert len(records) == 2 and all(losses for _, losses in records.values())
    best_id = min(records, key=lambda t: min(records[t][1]))
    loaded = load_config(str(best))
    _check_applied(loaded, records[best_id][0])
    assert f"trial {best_id}" in best.read_text().splitlines()[0]
    assert loaded.run.date is None and loaded.train.max_epochs == 30  # tune.max_epochs capped the trials only
    assert loaded.train.refit_epochs == load_config(None, []).train.refit_epochs  # the trials ran without refit

    # the first trial ran the config's own values; every trial ran 2 epochs or was stopped early by ASHA
    baseline = current_params(load_config(None, [f"model.horizon={HORIZON}"]))
    assert any(params == pytest.approx(baseline) for params, _ in records.values())
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("trial ") and "hidden" in line)
    table = lines[header + 1:header + 3]
    assert table[0].startswith(f"{best_id} *") and lines[header + 3].startswith("cost: wall time")
    for trial_id, (_, losses) in records.items():
        row = next(line for line in table if line.startswith(trial_id))
        assert row.endswith("ASHA stop") == (len(losses) < 2), row
        assert f" {min(losses):.4f} " in row, row
    assert "2 trials run" in lines[header + 3]

    # trial runs live apart from the nightly checkpoints, one Ray Train run per trial
    assert not (out / "checkpoints").exists()
    assert sorted(p.name for p in (experiment / "train").iterdir()) == sorted(
        f"trial-{t}-2024-06-01" for t in records)
