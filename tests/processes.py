"""Subprocesses that each start a Ray of their own, run at the same time: each mostly waits for its own Ray
to start, so together they take about as long as one (tests/test_console.py, tests/test_deploy.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_script(script: str, *args: str, env: dict) -> subprocess.Popen:
    """`python -c script args...` in the repository root, its output captured as text."""
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """Wait for `proc` (killed on timeout, which is raised) and give what it printed."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def stop(procs) -> None:
    """Kill whichever of `procs` still runs (a test that failed before waiting for them)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
