"""What a person sees while the job runs: our own log lines, Ray's, and the progress line of predict + write.

By default (`ray.log_level=WARNING`) the console shows forecaster's INFO lines (where the data comes
from, how many series; not each commit: QUIET_LOGGERS), the per-epoch training lines, one progress line
while the forecasts are predicted and written, the summary, and Ray's warnings and errors, but none of
Ray's INFO lines. `--verbose` (`ray.log_level=INFO`) brings Ray's own lines back. A failure prints in full
either way: exceptions are not logging, and Ray's own error-level Python logs stay.

Where each line that the default leaves out comes from, and what turns it off:

- Ray Data's INFO lines (`Dataset ... execution finished`, the Parquet estimates, `Data sink ...
  finished`) come from the `ray.data` logger, in the driver and in Ray Data's actors (the
  SplitCoordinator that feeds training logs two per epoch). Ray Data rebuilds that logger from its
  config whenever a worker gets a new dataset context, taking the level from RAY_DATA_LOG_LEVEL:
  set in the driver's environment and in the workers' runtime_env.
- `Progress bars disabled` (a warning, once per process): Ray Data's progress bars are off on purpose
  (this module draws its own line); the `ray.data._internal.progress` logger only says which progress
  display Ray Data uses.
- `E ... core_worker.cc: Actor with class name ... has constructor arguments in the object store and
  max_restarts > 0` (Ray's C++ core, at ERROR, once per process): a restartable actor got an object ref
  or a non-detached actor handle as a constructor argument, which a restart might not find again
  (ray-project/ray#53727). Neither actor is ours to change. Ray Train's PreemptionWatcher gets the
  training workers' handles: a local Ray runs none (one machine is never drained for preemption;
  forecaster.runtime.LOCAL_WORKER_ENV), so that line is gone. Ray Data's MapWorker (the predictor pool)
  always gets its DataContext and map transformer as refs, which the operator holds as long as the pool
  lives (a false alarm for Ray Data, ray-project/ray#57838). The C++ core writes that line to the
  driver's file descriptor 2 itself, past every Python logger; `drop_false_alarms` passes the CLI's fd 2
  through a small filter process that drops that one line (FALSE_ALARMS) and forwards every other byte.
  The line stays in the session's `logs/python-core-driver-*.log`. What else would remove it costs
  more: `max_restarts=0` through map_batches' ray_remote_args is deprecated (gone in Ray 2.64) and gives
  up the restart of a dead predictor; RAY_BACKEND_LOG_LEVEL=fatal drops all of Ray's C++ warnings and
  errors from the session logs too.
- `RayDeprecationWarning: ExecutionOptions.exclude_resources is deprecated` (Ray Train's
  DatasetManager): Ray Train's own `DataConfig.default_ingest_options()` passes the deprecated argument;
  that one warning is filtered by its message in Ray's worker processes.
- `Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out`
  (a warning when ray.init starts a local Ray): Ray 2.59+ turns token authentication on for a new local
  Ray unless RAY_AUTH_MODE is set, and says so. Setting RAY_AUTH_MODE=token ourselves is not enough:
  ray.init reads the mode from Ray's config, which this process cached at `import ray`. The notice is the
  only warning of its logger (AUTH_LOGGER) when a local Ray starts, and that logger is quiet.

The progress line (`SeriesProgress`): the predictor actors add the series of each batch to a small
counter actor (one asynchronous call per batch); a driver thread reads it twice a second. On a terminal
the line is redrawn in place; otherwise a line is printed for every further 10 % of the series, at most
one per 10 s, and a last one when the write is done. The CLI's `run` turns it on (`show_progress`);
a library caller (tests, benches) gets no counter actor and no line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import warnings

log = logging.getLogger(__name__)

# The level reaches worker processes through their environment (runtime_env env_vars), read by
# quiet_ray_worker, the worker_process_setup_hook.
LOG_LEVEL_ENV = "FORECASTER_RAY_LOG_LEVEL"
PROGRESS_LOGGER = "ray.data._internal.progress"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
# Ray Train's DataConfig.default_ingest_options() passes exclude_resources to ExecutionOptions itself.
EXCLUDE_RESOURCES_WARNING = r"`ExecutionOptions\.exclude_resources` is deprecated"
RAY_LOGGERS = ("ray", "ray.data")  # ray.train, ray.tune ... have no level of their own: ray's
HANDLER_NAME = "forecaster-console"


def verbose(level: str) -> bool:
    """Does ray.log_level=`level` show Ray's own INFO lines?"""
    return logging.getLevelName(level) <= logging.INFO


def ray_log_env(level: str) -> dict[str, str]:
    """Environment of Ray's worker processes for ray.log_level=`level` (their runtime_env env_vars)."""
    return {LOG_LEVEL_ENV: level, "RAY_DATA_LOG_LEVEL": level}


def quiet_ray(level: str) -> None:
    """Ray's Python loggers in this process at ray.log_level=`level` (the driver, or a worker).
    RAY_DATA_LOG_LEVEL is read again each time Ray Data rebuilds its logger."""
    os.environ["RAY_DATA_LOG_LEVEL"] = level
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    quiet = not verbose(level)
    for name in (PROGRESS_LOGGER, AUTH_LOGGER):
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.NOTSET)
    if quiet:
        from ray.util.annotations import RayDeprecationWarning  # imported first: its own filter goes in first

        warnings.filterwarnings("ignore", message=EXCLUDE_RESOURCES_WARNING, category=RayDeprecationWarning)


def quiet_ray_worker() -> None:
    """`worker_process_setup_hook`: Ray's loggers in a worker process at the job's ray.log_level."""
    quiet_ray(os.environ.get(LOG_LEVEL_ENV, "WARNING"))


class ConsoleFormatter(logging.Formatter):
    """INFO lines as bare messages; other levels with level and logger name (verbose: also the time)."""

    def __init__(self, timestamps: bool = False):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s" if timestamps
                         else "%(levelname)s %(name)s: %(message)s")
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO and not self.timestamps:
            message = record.getMessage()
            return message + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")
        return super().format(record)


# forecaster's INFO lines that the default console leaves out, and why
QUIET_LOGGERS = {"forecaster.write": "`committed <partition> (n files)`: the summary names each output"}


def setup_logging(level: str, stream=None) -> None:
    """The CLI's console for ray.log_level=`level`: forecaster's INFO lines (DEBUG at DEBUG; those of
    QUIET_LOGGERS only when verbose), other libraries' warnings (their INFO lines too when verbose).
    Leaves a root logger that has handlers of someone else (pytest's, an embedding application's) alone,
    as logging.basicConfig does."""
    root = logging.getLogger()
    if any(h.get_name() != HANDLER_NAME for h in root.handlers):
        return
    logging.getLogger("forecaster").setLevel(logging.DEBUG if level == "DEBUG" else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose(level) else logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(ConsoleFormatter(timestamps=verbose(level)))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose(level) else logging.WARNING)


# ---- Ray's C++ lines on file descriptor 2 ---------------------------------------------------------

# Lines that Ray's C++ core writes to fd 2 although nothing went wrong (see the module's docstring).
FALSE_ALARMS = (
    r"core_worker\.cc:\d+: Actor with class name: 'MapWorker\(.*' and ID: '\w+' has constructor arguments "
    r"in the object store and max_restarts > 0",
)
# The filter process: stdin line by line to its stderr (this process's fd 2 when it started), but the lines
# that match argv[1]. Its own session, so that a Ctrl-C for the job does not stop it before the job's
# last lines; it ends when the last writer of the pipe (this process, or Ray processes it started) closes.
_FILTER = """
import re, sys
alarm = re.compile(sys.argv[1].encode())
out = sys.stderr.buffer
for line in sys.stdin.buffer:
    if not alarm.search(line):
        out.write(line)
        out.flush()
"""


@contextlib.contextmanager
def drop_false_alarms(patterns: tuple[str, ...] = FALSE_ALARMS):
    """Within this block, what is written to file descriptor 2 goes through a filter process that drops
    the lines matching `patterns` and forwards everything else. Python's own sys.stderr writes straight to
    the original descriptor (a terminal stays a terminal). Does nothing where sys.stderr is not fd 2
    (pytest's capture, an embedding application)."""
    try:
        if sys.stderr.fileno() != 2:
            raise OSError("sys.stderr is not file descriptor 2")
        sys.stderr.flush()
        saved = os.dup(2)
        pipe = subprocess.Popen([sys.executable, "-c", _FILTER, "|".join(f"(?:{p})" for p in patterns)],
                                stdin=subprocess.PIPE, start_new_session=True)
    except (OSError, ValueError, AttributeError) as exc:  # no fd 2 of our own, or no process to filter it
        log.debug("Ray's C++ lines unfiltered: %s", exc)
        yield
        return
    python_stderr = sys.stderr
    sys.stderr = open(saved, "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace",
                      closefd=False)
    os.dup2(pipe.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        sys.stderr = python_stderr
        os.close(saved)
        pipe.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # Ray's processes may still hold the pipe
            pipe.wait(timeout=2)


# ---- the progress line of predict + write ------------------------------------------------------

_progress_stream = None


@contextlib.contextmanager
def show_progress(stream):
    """Within this block, SeriesProgress writes its line to `stream` (the CLI's `run` passes stdout)."""
    global _progress_stream
    before, _progress_stream = _progress_stream, stream
    try:
        yield
    finally:
        _progress_stream = before


class SeriesCounter:
    """The Ray actor that the predictor actors report to: series done so far."""

    def __init__(self):
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n

    def count(self) -> int:
        return self.done


class Tally:
    """What a predictor calls after each batch: one asynchronous call to the counter, never an error
    (a dead counter stops the progress line, not the forecast)."""

    def __init__(self, counter):
        self.counter = counter

    def __call__(self, n: int) -> None:
        try:
            self.counter.add.remote(n)
        except Exception:  # the progress line must never fail a batch
            pass


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(label: str, done: int, total: int, elapsed: float, bar_width: int = 0) -> str:
    """`forecast: 412/617 series (67%), 152 series/s, 1 s left` (with a bar of `bar_width` cells)."""
    fraction = min(done / total, 1.0) if total else 1.0
    rate = done / elapsed if elapsed > 0 else 0.0
    bar = ""
    if bar_width:
        filled = int(fraction * bar_width)
        bar = f" [{'#' * filled}{'.' * (bar_width - filled)}]"
    speed = f"{rate:.0f}" if rate >= 100 else f"{rate:.1f}"
    if done >= total:
        end = f"in {elapsed:.1f} s"
    elif done > 0 and elapsed > 0:
        end = f"{duration((total - done) / rate)} left"
    else:
        end = "time left unknown"
    return f"{label}:{bar} {done}/{total} series ({fraction:.0%}), {speed} series/s, {end}"


class Throttle:
    """When a log (not a terminal) gets another progress line: every further `step` of the total,
    at most one per `interval` seconds."""

    def __init__(self, total: int, step: float = 0.1, interval: float = 10.0, start: float = 0.0):
        self.total, self.step, self.interval = total, step, interval
        self.last_done, self.last_time = 0, start

    def due(self, done: int, now: float) -> bool:
        if done - self.last_done < self.step * self.total or now - self.last_time < self.interval:
            return False
        self.last_done, self.last_time = done, now
        return True


class SeriesProgress:
    """`with SeriesProgress(total):` around the step that predicts and writes; `counter` goes to the
    predictor actors (None when the line is off: no actor is started)."""

    BAR_WIDTH = 20

    def __init__(self, total: int, label: str = "forecast", stream=None, poll: float = 0.5):
        self.total, self.label, self.poll = total, label, poll
        self.stream = stream if stream is not None else _progress_stream
        self.counter = None
        self._actor = None
        self._done = 0
        self._stop = threading.Event()
        self._thread = None
        self._finished = False
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.stream is None or total <= 0:
            return
        try:
            import ray

            self._actor = ray.remote(num_cpus=0, max_restarts=0)(SeriesCounter).remote()
            self.counter = Tally(self._actor)
        except Exception as exc:  # no progress line, the job goes on
            log.debug("no progress line: %s", exc)

    def __enter__(self) -> SeriesProgress:
        self.started = time.perf_counter()
        self.throttle = Throttle(self.total, start=self.started)
        if self._actor is not None:
            self._thread = threading.Thread(target=self._watch, name="series-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._actor is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._finished:
            pass
        elif exc_type is None and self._read_final():
            self._write(self._line(self._done), final=True)
        elif self.tty:
            self.stream.write("\n")
        with contextlib.suppress(Exception):
            import ray

            ray.kill(self._actor)

    def _read(self) -> bool:
        """Fetch the count; False once the counter cannot be read (the line stops)."""
        import ray

        try:
            self._done = ray.get(self._actor.count.remote(), timeout=10)
            return True
        except Exception as exc:  # a dead counter stops the line, not the job
            log.debug("progress counter unreadable, the progress line stops: %s", exc)
            return False

    def _read_final(self, wait: float = 2.0) -> bool:
        """The count once the write is done: the last batches' calls may still be on their way."""
        deadline = time.perf_counter() + wait
        while self._read():
            if self._done >= self.total or time.perf_counter() > deadline:
                return True
            time.sleep(0.05)
        return False

    def _line(self, done: int) -> str:
        return progress_line(self.label, done, self.total, time.perf_counter() - self.started,
                             self.BAR_WIDTH if self.tty else 0)

    def _write(self, line: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            if not self._read():
                return
            if self._done >= self.total:  # every series forecast: the last line now, before the commit's
                self._write(self._line(self._done), final=True)
                self._finished = True
                return
            if self.tty or self.throttle.due(self._done, time.perf_counter()):
                self._write(self._line(self._done))
