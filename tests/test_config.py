"""forecaster.config.load_config and the CLI's handling of bad config: everything stops before any work."""

import json
import re

import pytest

from forecaster import cli
from forecaster.config import (
    Config,
    ConfigError,
    all_keys,
    config_from_dict,
    load_config,
    parse_set,
    season_length,
)

# ---------------------------------------------------------------- defaults and --set parsing


def test_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.data.freq == "MS" and cfg.data.id_col == "unique_id" and cfg.data.storage_options == {}
    assert cfg.model.horizon == 18 and cfg.model.input_size is None and cfg.model.loss == "mae"
    assert cfg.train.use_gpu is False and cfg.predict.actors is None and cfg.run.date is None
    assert cfg.season == 12 and cfg.input_size == 36  # max(2*18, min(3*12, 5*18), 8)
    assert len(cfg.forecast_date) == 10  # today, YYYY-MM-DD


def test_realised_intervals_need_the_realised_calibration_and_a_level():
    """What the scores stage and the backtest ask before they count earlier forecasts' errors."""
    assert load_config().realised_intervals  # the defaults: realised, levels [80, 95]
    assert not load_config(None, ["model.interval_calibration=validation"]).realised_intervals
    assert not load_config(None, ["model.levels=[]"]).realised_intervals


def test_set_parses_scalars():
    cfg = load_config(None, [
        "model.horizon=6",  # int
        "model.dropout=0.25",  # float
        "train.learning_rate=1e-2",  # float written with exponent and sign
        "train.cpus_per_worker=2",  # int into a float field
        "train.use_gpu=true",  # bool
        "predict.actors=null",  # null into an optional field
        "model.input_size=24",
        "data.freq=QS",  # string
        "output.uri=s3://bucket/out",
    ])
    assert cfg.model.horizon == 6 and isinstance(cfg.model.horizon, int)
    assert cfg.model.dropout == 0.25
    assert cfg.train.learning_rate == pytest.approx(0.01)
    assert cfg.train.cpus_per_worker == 2.0 and isinstance(cfg.train.cpus_per_worker, float)
    assert cfg.train.use_gpu is True
    assert cfg.predict.actors is None
    assert cfg.input_size == 24
    assert cfg.data.freq == "QS" and cfg.output.uri == "s3://bucket/out"


@pytest.mark.parametrize("raw,expected", [("true", True), ("False", False), ("yes", True), ("no", False),
                                          ("1", True), ("0", False)])
def test_set_bools(raw, expected):
    assert load_config(None, [f"train.use_gpu={raw}"]).train.use_gpu is expected


def test_set_date_stays_a_string():
    assert parse_set("run.date=2020-01-01") == ("run.date", "2020-01-01")
    cfg = load_config(None, ["run.date=2020-01-01"])
    assert cfg.run.date == "2020-01-01" and cfg.forecast_date == "2020-01-01"


def test_set_text_keys_keep_the_text_as_written():
    # YAML 1.1 would read no -> False, on -> True, 010 -> 8 (octal), 1_000 -> 1000
    cfg = load_config(None, ["data.target_col=no", "data.id_col=010", "data.time_col=on", "run.name=1_000"])
    assert (cfg.data.target_col, cfg.data.id_col, cfg.data.time_col) == ("no", "010", "on")
    assert cfg.run.name == "1_000"
    assert load_config(None, ["run.date=null"]).run.date is None


def test_set_value_may_contain_equals_and_spaces():
    cfg = load_config(None, ["data.uri=s3://b/k=v/data.parquet", " model.horizon = 7"])
    assert cfg.data.uri == "s3://b/k=v/data.parquet" and cfg.model.horizon == 7


def test_set_without_equals():
    with pytest.raises(ConfigError, match="model.horizon.*expected key=value"):
        load_config(None, ["model.horizon"])


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("data:\n  uri: in.parquet\n  freq: W\nmodel:\n  horizon: 4\nrun:\n  date: 2021-02-03\n")
    cfg = load_config(str(path), ["model.horizon=5"])
    assert cfg.data.uri == "in.parquet" and cfg.data.freq == "W"
    assert cfg.model.horizon == 5  # --set wins over the file
    assert cfg.run.date == "2021-02-03"


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert load_config(str(path)) == Config()


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("item,named,suggested", [
    ("model.horizn=6", "model.horizn", "model.horizon"),
    ("data.frq=D", "data.frq", "data.freq"),
    ("train.learningrate=0.1", "train.learningrate", "train.learning_rate"),
    ("model.horizon.x=3", "model.horizon.x", "model.horizon"),
])
def test_unknown_key_names_it_and_suggests_the_closest(item, named, suggested):
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    assert f"unknown config key {named!r}" in str(err.value)
    assert f"did you mean {suggested!r}" in str(err.value)


def test_unknown_section_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["modle.horizon=6"])
    assert "'modle'" in str(err.value) and "did you mean 'model'" in str(err.value)


def test_unknown_section_without_close_match_lists_the_sections():
    with pytest.raises(ConfigError, match=r"'zzz'.*valid: data, model, train, predict, output, run, ray"):
        load_config(None, ["zzz.a=1"])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model:\n  horizn: 6\n")
    with pytest.raises(ConfigError, match=r"'model.horizn'.*did you mean 'model.horizon'"):
        load_config(str(path))


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="model: expected a mapping"):
        load_config(None, ["model=3"])


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize("item,key", [
    ("model.horizon=-1", "model.horizon"),
    ("model.horizon=0", "model.horizon"),
    ("model.horizon=abc", "model.horizon"),
    ("model.horizon=6.5", "model.horizon"),
    ("model.horizon=true", "model.horizon"),
    ("model.horizon=null", "model.horizon"),
    ("model.input_size=0", "model.input_size"),
    ("data.freq=XYZ", "data.freq"),
    ("data.freq=", "data.freq"),
    ("data.freq=0D", "data.freq"),
    ("data.freq=-1MS", "data.freq"),
    ("model.loss=huber", "model.loss"),
    ("model.scaler=global", "model.scaler"),
    ("model.dropout=1.5", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"),
    ("model.dropout=.nan", "model.dropout"),
    ("train.learning_rate=0", "train.learning_rate"),
    ("train.learning_rate=.nan", "train.learning_rate"),
    ("train.ema_decay=1", "train.ema_decay"),
    ("model.seasonality_level=1.5", "model.seasonality_level"),
    ("model.seasonality_level=-0.1", "model.seasonality_level"),
    ("model.seasonality_level=.nan", "model.seasonality_level"),
    ("train.ema_decay=-0.1", "train.ema_decay"),
    ("train.learning_rate=.inf", "train.learning_rate"),
    ("train.cpus_per_worker=.nan", "train.cpus_per_worker"),
    ("train.max_failures=-1", "train.max_failures"),
    ("ray.idle_workers=-1", "ray.idle_workers"),
    ("train.use_gpu=maybe", "train.use_gpu"),
    ("predict.actors=0", "predict.actors"),
    ("run.date=2020-13-01", "run.date"),
    ("run.date=2020-02-30", "run.date"),
    ("run.date=20200101", "run.date"),
    ("run.date=2020-1-1", "run.date"),
    ("run.date=2020-01-01T00:00", "run.date"),
    ("data.uri=", "data.uri"),
    ("data.uri=null", "data.uri"),
    ("output.uri=", "output.uri"),
    ("data.id_col=", "data.id_col"),
    ("data.target_col=ds", "data.target_col"),
])
def test_bad_value_names_the_key(item, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    assert key in str(err.value)


@pytest.mark.parametrize("item,message", [
    ("model.horizon=0", "model.horizon=0: must be a positive integer"),
    ("train.recent_horizons=0.5", "train.recent_horizons=0.5: must be >= 1"),  # a float key: 1.5 is fine
    ("model.nonnegative=yes", "model.nonnegative='yes': expected one of auto, none"),
])
def test_a_value_below_its_minimum_says_what_the_key_takes(item, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [item])
    assert load_config(None, ["train.recent_horizons=1.5"]).train.recent_horizons == 1.5


def test_bad_freq_message_relays_the_pandas_hint():
    with pytest.raises(ConfigError, match=r"data.freq='H'.*Did you mean h\?"):
        load_config(None, ["data.freq=H"])


def test_bad_date_in_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("run:\n  date: 2020-13-01\n")
    with pytest.raises(ConfigError, match=r"run.date='2020-13-01'"):
        load_config(str(path))


def test_bad_value_in_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model:\n  horizon: [1, 2]\n")
    with pytest.raises(ConfigError, match="model.horizon"):
        load_config(str(path))


def test_storage_options_value_is_not_echoed_in_errors():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.storage_options=hunter2-secret"])
    assert "data.storage_options" in str(err.value) and "hunter2" not in str(err.value)


# ---------------------------------------------------------------- bad files


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"config file {path}"):
        load_config(str(path))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  horizon: [6\n")
    with pytest.raises(ConfigError, match=rf"config file {path}: invalid YAML"):
        load_config(str(path))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_names_the_file(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"config file {path}: expected a mapping"):
        load_config(str(path))


def test_directory_as_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=f"config file {tmp_path}"):
        load_config(str(tmp_path))


# ---------------------------------------------------------------- derived values


@pytest.mark.parametrize("freq,season", [
    ("MS", 12), ("M", 12), ("ME", 12), ("QS", 4), ("Q", 4), ("YS", 1), ("Y", 1), ("W", 52), ("W-MON", 52),
    ("D", 7), ("h", 24), ("H", 24), ("B", 5), ("BMS", 12), ("BQS", 4), ("min", 60),
])
def test_season_length(freq, season):
    assert season_length(freq) == season


@pytest.mark.parametrize("freq,horizon,expected", [
    ("MS", 18, 36),  # max(36, min(36, 90), 8)
    ("MS", 6, 30),  # max(12, min(36, 30), 8)
    ("QS", 8, 16),  # max(16, min(12, 40), 8)
    ("YS", 6, 12),  # max(12, min(3, 30), 8)
    ("YS", 1, 8),  # the floor of 8
    ("D", 14, 28),  # max(28, min(21, 70), 8)
    ("h", 24, 72),  # max(48, min(72, 120), 8)
    ("W", 4, 20),  # max(8, min(156, 20), 8)
])
def test_default_input_size(freq, horizon, expected):
    cfg = load_config(None, [f"data.freq={freq}", f"model.horizon={horizon}"])
    assert cfg.input_size == expected


def test_explicit_input_size_wins():
    assert load_config(None, ["model.input_size=5"]).input_size == 5


# ---------------------------------------------------------------- to_dict / config_from_dict


SECRET = "AKIA-fake-secret-0123456789"


def test_to_dict_redacts_storage_options():
    cfg = load_config(None, [f"data.storage_options.secret={SECRET}", "data.storage_options.key=k-" + SECRET])
    assert cfg.data.storage_options == {"secret": SECRET, "key": "k-" + SECRET}
    redacted = cfg.to_dict()
    assert redacted["data"]["storage_options"] == {"secret": "***", "key": "***"}
    assert SECRET not in json.dumps(redacted)
    assert SECRET in json.dumps(cfg.to_dict(redact=False))


def test_storage_options_as_a_mapping_and_nested_values_are_redacted():
    cfg = load_config(None, [f"data.storage_options={{client_kwargs: {{token: {SECRET}}}}}"])
    assert cfg.data.storage_options == {"client_kwargs": {"token": SECRET}}
    assert SECRET not in json.dumps(cfg.to_dict())


def test_config_from_dict_round_trips():
    cfg = load_config(None, [
        "data.uri=s3://bucket/in", "data.freq=W", f"data.storage_options.secret={SECRET}", "model.horizon=4",
        "model.input_size=12", "train.use_gpu=true", "predict.actors=3", "run.date=2024-02-29",
        "ray.data_cpus=1.5", "data.id_col=series",
    ])
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict(redact=False))))
    assert again == cfg
    assert again.to_dict(redact=False) == cfg.to_dict(redact=False)


def test_config_from_dict_validates():
    values = Config().to_dict(redact=False)
    values["model"]["horizon"] = 0
    with pytest.raises(ConfigError, match="model.horizon"):
        config_from_dict(values)


def test_every_key_is_settable():
    keys = all_keys()
    assert "model.horizon" in keys and "data.storage_options" in keys
    assert len(keys) == len(set(keys))


# ---------------------------------------------------------------- CLI


def test_cli_bad_key_exits_2_and_names_it(capsys):
    assert cli.main(["config", "--set", "model.horizn=6"]) == 2
    err = capsys.readouterr().err
    assert "forecaster: error:" in err and "model.horizn" in err and "model.horizon" in err


def test_cli_bad_value_exits_2_before_any_work(capsys):
    assert cli.main(["run", "--set", "run.date=2020-13-01"]) == 2
    captured = capsys.readouterr()
    assert "run.date" in captured.err and captured.out == ""


def test_cli_bad_config_file_exits_2(tmp_path, capsys):
    assert cli.main(["config", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_cli_config_prints_resolved_json(capsys):
    assert cli.main(["config", "--set", "model.horizon=6", "--set", f"data.storage_options.key={SECRET}"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert printed["model"]["horizon"] == 6
    assert printed["data"]["storage_options"] == {"key": "***"}
    assert SECRET not in out


def test_min_workers_makes_ray_train_elastic_within_bounds():
    from forecaster.train import scaling

    assert scaling(load_config(None, [])) == 2  # fixed by default
    assert scaling(load_config(None, ["train.min_workers=1"])) == (1, 2)  # ScalingConfig's elastic range
    assert scaling(load_config(None, ["train.min_workers=2"])) == 2
    with pytest.raises(ConfigError, match="train.min_workers=3: must be at most train.num_workers=2"):
        load_config(None, ["train.min_workers=3"])
    with pytest.raises(ConfigError, match="train.min_workers=0"):
        load_config(None, ["train.min_workers=0"])


def test_only_a_run_of_always_one_rank_reads_the_series_unsplit():
    from forecaster.train import data_config

    def split(*overrides):
        return data_config(load_config(None, list(overrides)))._datasets_to_split

    assert split() == "all" and split("train.min_workers=1") == "all"  # two ranks, or one to two
    assert split("train.num_workers=1") == []
