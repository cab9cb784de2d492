"""What a person sees (forecaster/console.py): the progress line of predict + write, how the verbosity
reaches Ray, and, through real runs in subprocesses, a console without Ray's noise that still shows a
real failure."""

import contextlib
import io
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster import console, runtime
from forecaster.config import load_config
from forecaster.synthetic import seasonal_series
from tests.processes import finish, start_script, stop

ROOT = Path(__file__).resolve().parents[1]
FORECASTER = Path(sys.executable).parent / "forecaster"


# ---- the progress line ----------------------------------------------------------------------------

def test_progress_line_shows_series_done_of_total_rate_and_time_left():
    assert console.progress_line("forecast", 412, 617, 2.0) == (
        "forecast: 412/617 series (67%), 206 series/s, 1 s left")
    assert console.progress_line("forecast", 30, 6000, 10.0) == (
        "forecast: 30/6000 series (0%), 3.0 series/s, 33 min 10 s left")
    assert console.progress_line("forecast", 0, 617, 3.0).endswith("0.0 series/s, time left unknown")
    assert console.progress_line("forecast", 617, 617, 8.24) == (
        "forecast: 617/617 series (100%), 74.9 series/s, in 8.2 s")
    # on a terminal, with a bar
    assert console.progress_line("forecast", 5, 10, 1.0, bar_width=10) == (
        "forecast: [#####.....] 5/10 series (50%), 5.0 series/s, 1 s left")


@pytest.mark.parametrize("seconds,text", [(0.4, "0 s"), (59.4, "59 s"), (125, "2 min 05 s"), (3725, "1 h 02 min")])
def test_duration(seconds, text):
    assert console.duration(seconds) == text


def test_a_log_gets_a_line_per_further_ten_percent_at_most_one_per_ten_seconds():
    # 1000 series at 10 per second: one line every 10 % (10 s apart)
    slow = console.Throttle(1000)
    assert [t for t in range(1, 101) if slow.due(10 * t, float(t))] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    # 1000 series at 100 per second: 10 % every second, yet one line per 10 s
    fast = console.Throttle(1000)
    assert [t for t in range(1, 11) if fast.due(100 * t, float(t))] == [10]
    # stuck: no line repeats the same count
    stuck = console.Throttle(1000)
    assert [t for t in range(1, 60) if stuck.due(150, float(t))] == [10]


def test_without_the_console_no_counter_actor_and_no_line():
    """pipeline.run outside the CLI (tests, benches): SeriesProgress is inert; the predictor works
    without a progress hook (the backtest and the benches construct it directly)."""
    progress = console.SeriesProgress(617)
    assert progress.counter is None
    with progress:
        pass
    with console.show_progress(io.StringIO()):
        assert console.SeriesProgress(0).counter is None  # nothing to forecast: no actor either


def test_the_predictor_reports_each_batch_it_forecast():
    from forecaster.predict import SeriesPredictor

    batch = pa.table({"unique_id": ["a", "b", "c"],
                      "y": pa.array([[1.0, 2.0, 3.0, 4.0]] * 3, pa.list_(pa.float64())),
                      "last_ds": pa.array(np.array(["2020-12-01"] * 3, dtype="datetime64[us]")),
                      "length": [4, 4, 4]})
    seen = []
    options = {"freq": "MS", "season": 4, "horizon": 2, "fallback": "none", "combine": "none", "nonnegative": "none",
               "statistical": "theta"}
    SeriesPredictor(None, **options, progress=seen.append)(batch)
    assert seen == [3]
    assert SeriesPredictor(None, **options)(batch).num_rows == 6


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.ray
def test_series_progress_counts_what_the_predictors_report(ray_session):
    log = io.StringIO()
    with console.SeriesProgress(50, stream=log, poll=0.05) as progress:
        for _ in range(5):
            progress.counter(10)
            time.sleep(0.05)
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forecast: 50/50 series (100%)"), lines  # a log: no line per poll

    screen = _Terminal()
    with console.SeriesProgress(20, stream=screen, poll=0.05) as progress:
        progress.counter(10)
        time.sleep(0.5)
        progress.counter(10)
    text = screen.getvalue()
    assert "\r" in text and "[##########..........] 10/20 series" in text and text.endswith("\n")
    assert "[####################] 20/20 series (100%)" in text


@pytest.mark.ray
def test_a_dead_counter_stops_the_line_not_the_job(ray_session):
    import ray

    log = io.StringIO()
    with console.SeriesProgress(10, stream=log, poll=0.05) as progress:
        ray.kill(progress._actor)
        time.sleep(0.3)
        progress.counter(10)  # the predictor's call: no error
    assert log.getvalue() == ""


# ---- verbosity: what reaches Ray --------------------------------------------------------------------

@pytest.fixture
def ray_loggers():
    """Restores the Ray logger levels, the warning filters and os.environ that quiet_ray changes."""
    names = (*console.RAY_LOGGERS, console.PROGRESS_LOGGER, console.AUTH_LOGGER)
    levels = {n: logging.getLogger(n).level for n in names}
    environ = dict(os.environ)
    with warnings.catch_warnings():
        yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    os.environ.clear()
    os.environ.update(environ)


def test_quiet_ray_sets_ray_loggers_and_filters_only_rays_own_deprecation(ray_loggers):
    from ray.util.annotations import RayDeprecationWarning

    console.quiet_ray("WARNING")
    assert logging.getLogger("ray.data").level == logging.WARNING and os.environ["RAY_DATA_LOG_LEVEL"] == "WARNING"
    assert not logging.getLogger("ray.data._internal.execution.streaming_executor").isEnabledFor(logging.INFO)
    assert not logging.getLogger("ray.train").isEnabledFor(logging.INFO)
    assert not logging.getLogger(console.PROGRESS_LOGGER).isEnabledFor(logging.WARNING)
    assert logging.getLogger(console.PROGRESS_LOGGER).isEnabledFor(logging.ERROR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet_ray("WARNING")
        warnings.warn("`ExecutionOptions.exclude_resources` is deprecated and will be removed", RayDeprecationWarning,
                      stacklevel=1)
        warnings.warn("`ExecutionOptions.something_else` is deprecated", RayDeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`ExecutionOptions.something_else` is deprecated"]

    console.quiet_ray("INFO")  # --verbose: Ray's INFO lines again
    assert logging.getLogger("ray.data").level == logging.INFO and os.environ["RAY_DATA_LOG_LEVEL"] == "INFO"
    assert logging.getLogger("ray.data._internal.execution.streaming_executor").isEnabledFor(logging.INFO)
    assert logging.getLogger(console.PROGRESS_LOGGER).isEnabledFor(logging.WARNING)


def test_the_worker_hook_reads_the_level_from_its_environment(ray_loggers, monkeypatch):
    monkeypatch.setenv(console.LOG_LEVEL_ENV, "INFO")
    console.quiet_ray_worker()
    assert logging.getLogger("ray.data").level == logging.INFO
    monkeypatch.setenv(console.LOG_LEVEL_ENV, "ERROR")
    console.quiet_ray_worker()
    assert logging.getLogger("ray").level == logging.ERROR


@pytest.fixture
def recorded_init(monkeypatch, ray_loggers):
    """init_ray(config from overrides) with ray.init recorded instead of run; returns its kwargs."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(runtime.JOB_CONFIG_ENV, raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])

    ctx = ray.data.DataContext.get_current()
    before = ctx.print_on_execution_start, ctx.enable_progress_bars

    def init(overrides):
        calls = []
        monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
        runtime.init_ray(load_config(None, overrides))
        return calls[0]

    yield init
    ctx.print_on_execution_start, ctx.enable_progress_bars = before


def test_the_level_reaches_ray_data_the_workers_and_their_setup_hook(recorded_init):
    import ray

    call = recorded_init([])
    env_vars = call["runtime_env"]["env_vars"]
    assert env_vars["RAY_DATA_LOG_LEVEL"] == "WARNING" and env_vars[console.LOG_LEVEL_ENV] == "WARNING"
    assert env_vars["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"  # a local Ray: nothing to drain
    assert call["runtime_env"]["worker_process_setup_hook"] == "forecaster.runtime.setup_local_worker"
    ctx = ray.data.DataContext.get_current()
    assert not ctx.enable_progress_bars and not ctx.print_on_execution_start

    call = recorded_init(["ray.log_level=INFO", "ray.dashboard=true"])
    assert call["runtime_env"]["env_vars"]["RAY_DATA_LOG_LEVEL"] == "INFO"
    assert call["runtime_env"]["worker_process_setup_hook"] == "forecaster.console.quiet_ray_worker"
    assert ray.data.DataContext.get_current().print_on_execution_start


def test_a_submitted_job_keeps_its_own_settings(recorded_init, monkeypatch):
    """Ray refuses to merge a job's runtime_env with ray.init's where both name a variable or a hook."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv(runtime.JOB_CONFIG_ENV, '{"runtime_env": {"env_vars": {"RAY_DATA_LOG_LEVEL": "DEBUG"}, '
                                               '"worker_process_setup_hook": "my.hook"}}')
    call = recorded_init([])
    assert "RAY_DATA_LOG_LEVEL" not in call["runtime_env"]["env_vars"]
    assert "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in call["runtime_env"]["env_vars"]  # a cluster keeps it
    assert "worker_process_setup_hook" not in call["runtime_env"]


def test_console_formatter_bare_info_lines_named_warnings():
    def record(level):
        return logging.LogRecord("forecaster.read", level, __file__, 1, "reading %d file(s)", (3,), None)

    assert console.ConsoleFormatter().format(record(logging.INFO)) == "reading 3 file(s)"
    assert console.ConsoleFormatter().format(record(logging.WARNING)) == "WARNING forecaster.read: reading 3 file(s)"
    assert re.match(r"\d{4}-\d\d-\d\d .* INFO forecaster.read: reading 3", console.ConsoleFormatter(True).format(
        record(logging.INFO)))


@contextlib.contextmanager
def _bare_root():
    """The root logger as a CLI process has it (no handlers; pytest adds its own during each test)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("forecaster", *console.QUIET_LOGGERS)}
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
def test_the_cli_console_shows_our_info_lines_and_others_warnings(level):
    stream = io.StringIO()
    with _bare_root():
        console.setup_logging(level, stream=stream)
        console.setup_logging(level, stream=stream)  # a second main() in one process: still one handler
        logging.getLogger("forecaster.read").info("reading 1 Parquet file(s)")
        logging.getLogger("forecaster.write").info("committed out/forecasts")
        logging.getLogger("fsspec").info("a library's INFO line")
        logging.getLogger("fsspec").warning("a library's warning")
    lines = stream.getvalue().splitlines()
    if level == "WARNING":
        assert lines == ["reading 1 Parquet file(s)", "WARNING fsspec: a library's warning"]
    else:
        assert [line.split(" ", 2)[2] for line in lines] == [
            "INFO forecaster.read: reading 1 Parquet file(s)", "INFO forecaster.write: committed out/forecasts",
            "INFO fsspec: a library's INFO line", "WARNING fsspec: a library's warning"]


# ---- real runs in subprocesses ------------------------------------------------------------------------

def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_DATA_LOG_LEVEL"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


# Ray's C++ core logs this at ERROR, once per process, for every Ray Data actor pool: Ray Data passes its
# actors their arguments as object refs (ray-project/ray#53727, #57838); see forecaster/console.py.
RAY_DATA_ACTOR_FALSE_ALARM = re.compile(r"\bE \d+ \d+\] core_worker\.cc:\d+: Actor with class name: 'MapWorker\(")


def _noise(lines: list[str]) -> list[str]:
    """Lines that look like an error (Python's ERROR, the C++ core's `E` level) or are Ray Data's INFO."""
    return [line for line in lines if re.search(r"\bERROR\b|\] E |\bE \d+ \d+\]|execution finished", line)]


FILTER_SCRIPT = """
import os, sys
from forecaster import console

with console.drop_false_alarms():
    os.write(2, b"[2026-12-06 08:23:15,071 E 12877 12877] core_worker.cc:2465: Actor with class name: "
                b"'MapWorker(MapBatches(SeriesPredictor))' and ID: '6e16b1a181715bf1be9186a901000000' has "
                b"constructor arguments in the object store and max_restarts > 0. If the arguments ...\\n")
    os.write(2, b"[2026-12-06 08:23:15,072 E 12877 12877] core_worker.cc:999: a real error\\n")
    os.write(2, b"a line without its end")
    print("python's stderr", file=sys.stderr)
    print("stdout")
    if sys.argv[1] == "fail":
        raise RuntimeError("a failure after the block")
"""


@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_the_cli_drops_rays_false_alarm_and_forwards_every_other_byte(mode):
    done = subprocess.run([sys.executable, "-c", FILTER_SCRIPT, mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout == "stdout\n"
    assert "has constructor arguments" not in done.stderr, done.stderr
    assert "core_worker.cc:999: a real error\n" in done.stderr and "a line without its end" in done.stderr
    assert "python's stderr\n" in done.stderr
    if mode == "fail":
        assert done.returncode == 1 and "RuntimeError: a failure after the block" in done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_the_filter_steps_aside_where_stderr_is_not_fd_2(capsys):
    with console.drop_false_alarms():
        print("captured", file=sys.stderr)
    assert capsys.readouterr().err == "captured\n"


@pytest.mark.ray
def test_a_small_run_prints_a_short_clean_console(tmp_path):
    data = tmp_path / "input.parquet"
    pq.write_table(seasonal_series(12, (30, 40), freq="MS", seed=5), data)
    done = subprocess.run(
        [str(FORECASTER), "run", "--set", f"data.uri={data}", "--set", "data.freq=MS", "--set", "model.horizon=6",
         "--set", f"output.uri={tmp_path / 'out'}", "--set", "run.date=2024-01-01", "--set", "train.num_workers=1",
         "--set", "train.max_epochs=2", "--set", "model.hidden_size=8", "--set", "train.windows_per_series=8",
         "--set", "predict.batch_size=4", "--set", "predict.actors=1", "--set", "ray.num_cpus=2",
         "--set", "report.enabled=false"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    lines = output.splitlines()
    assert _noise(lines) == [], output
    assert not any(RAY_DATA_ACTOR_FALSE_ALARM.search(line) for line in lines), output
    assert "reading 1 Parquet file(s) from" in output and "12 series: 12 clean, 0 rejected" in output
    refits = sum("val_loss refit" in line for line in lines)  # train.refit_epochs' default, after the 2 epochs
    assert refits == load_config(None, []).train.refit_epochs
    assert sum("epoch " in line for line in lines) == 2 + refits
    assert re.search(r"^forecast: 12/12 series \(100%\), [\d.]+ series/s, in [\d.]+ s$", done.stdout, re.M), output
    assert "wall time:" in done.stdout
    assert len(lines) <= 26, output  # 19 lines, and Ray Train's 7-line placement-group cleaner warning at times


RAY_DATA_SCRIPT = """
import sys
import ray
from forecaster.config import load_config
from forecaster.console import setup_logging
from forecaster.runtime import init_ray, predict_pool

level, fail = sys.argv[1], sys.argv[2] == "fail"
cfg = load_config(None, ["ray.num_cpus=2", "predict.actors=1", f"ray.log_level={level}"])
setup_logging(level)
init_ray(cfg)

class Double:
    def __call__(self, batch):
        if fail:
            raise ValueError("boom in the batch")
        return {"id": batch["id"] * 2}

rows = ray.data.range(8).map_batches(Double, compute=predict_pool(cfg), batch_size=4)
print("SUM", sum(r["id"] for r in rows.take_all()))
"""


def _ray_data(*runs: tuple[str, str]) -> list[subprocess.CompletedProcess]:
    """RAY_DATA_SCRIPT once per (level, mode), all at once (tests/processes.py)."""
    procs = [start_script(RAY_DATA_SCRIPT, level, mode, env=_env()) for level, mode in runs]
    try:
        return [finish(proc, timeout=300) for proc in procs]
    finally:
        stop(procs)


@pytest.mark.ray
def test_verbose_brings_rays_lines_back_and_a_failure_shows_its_cause_either_way():
    verbose, failed = _ray_data(("INFO", "ok"), ("WARNING", "fail"))
    assert verbose.returncode == 0 and "SUM 56" in verbose.stdout, verbose.stderr[-3000:]
    assert "execution finished" in verbose.stdout + verbose.stderr

    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "Traceback" in output and "ValueError: boom in the batch" in output, output[-3000:]
    assert "execution finished" not in output


@pytest.mark.slow
def test_a_bad_data_uri_stops_with_the_path_and_exit_code_2(tmp_path):
    missing = tmp_path / "nowhere.parquet"
    done = subprocess.run([str(FORECASTER), "run", "--set", f"data.uri={missing}", "--set",
                           f"output.uri={tmp_path / 'out'}"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(missing) in done.stderr and done.stderr.startswith("forecaster: error:"), done.stderr
