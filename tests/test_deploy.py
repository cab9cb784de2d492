"""Offline checks of the deployment files: Dockerfile, .dockerignore and cluster.yaml.

cluster.yaml is checked with Ray's own code: `prepare_config` merges the AWS defaults (a file shipped with
Ray; no AWS call, no credentials) and `validate_config` applies Ray's JSON schema. What needs AWS (subnets,
security groups, IAM, AMIs) is only looked up by `ray up`, not here.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.processes import finish, start_script, stop

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _ray_pin(requirements: list[str]) -> str:
    pins = [m.group(1) for r in requirements if (m := re.fullmatch(r"ray(?:\[[^\]]*\])?==(\S+)", r.replace(" ", "")))]
    assert len(pins) == 1, f"expected one ray==X pin in {requirements}"
    return pins[0]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _from_image() -> str:
    froms = [args for ins, args in _dockerfile() if ins == "FROM"]
    assert froms, "Dockerfile has no FROM"
    return [word for word in froms[-1].split() if not word.startswith("--")][0]  # skip --platform=...


def _cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif node is not None:
        yield str(node)


# ---- Dockerfile ----

def test_dockerfile_base_image_matches_pyproject():
    image = _from_image()
    tag = r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<major>\d)(?P<minor>\d+)(?:-(?P<platform>\S+))?"
    match = re.fullmatch(tag, image)
    assert match, f"FROM {image}: expected a pinned rayproject/ray:<version>-py<XY>[-<platform>] tag"
    project = _pyproject()["project"]
    assert match["ray"] == _ray_pin(project["dependencies"])
    assert match["ray"] == _ray_pin(project["optional-dependencies"]["cluster"])
    python = Version(f"{match['major']}.{match['minor']}")
    assert python in SpecifierSet(project["requires-python"]), f"py{python} not allowed by requires-python"


def test_local_ray_matches_the_pin():
    # The client that submits jobs must run the Ray version of the cluster.
    import ray

    assert ray.__version__ == _ray_pin(_pyproject()["project"]["dependencies"])


def test_dockerfile_runs_as_non_root_in_the_project_dir():
    users = [args for ins, args in _dockerfile() if ins == "USER"]
    assert users, "Dockerfile has no USER line: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]}"
    assert user == "ray"
    workdirs = [args for ins, args in _dockerfile() if ins == "WORKDIR"]
    assert workdirs[-1] == "/home/ray/forecaster"


def test_dockerfile_installs_the_project_and_a_torch_the_project_accepts():
    runs = " ".join(args for ins, args in _dockerfile() if ins == "RUN")
    assert re.search(r"pip install --no-cache-dir \"?\.\[s3,gcs,cluster\]\"?", runs), runs
    args = dict(a.split("=", 1) for ins, a in _dockerfile() if ins == "ARG" and "=" in a)
    torch_version = args["TORCH_VERSION"]
    assert torch_version == "2.13.0"
    torch_spec = next(d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch"))
    assert Version(torch_version) in SpecifierSet(torch_spec[len("torch"):])
    assert "download.pytorch.org/whl/" in args["TORCH_INDEX"]


def test_dockerignore_keeps_local_state_out_of_the_image():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in (".venv", "out", ".git", "bench/work"):
        assert needed in entries
    assert entries & {"__pycache__", "**/__pycache__"}
    # pyproject's readme and the package sources must reach the build.
    assert not entries & {"README.md", "forecaster", "jobs", "pyproject.toml", "configs"}


# ---- cluster.yaml ----

def test_cluster_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_cluster()))


def test_rays_schema_check_is_not_a_no_op():
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(_cluster())
    bad["docker"]["imgae"] = bad["docker"]["image"]
    with pytest.raises(Exception, match="imgae"):
        validate_config(prepare_config(bad))


def test_cluster_runs_our_image_on_a_cpu_head_and_autoscaling_gpu_workers():
    cfg = _cluster()
    project = _pyproject()["project"]
    assert cfg["provider"]["type"] == "aws"
    assert isinstance(cfg["provider"]["cache_stopped_nodes"], bool)
    name, _, tag = cfg["docker"]["image"].rpartition(":")
    assert name.rsplit("/", 1)[-1] == project["name"]
    assert tag == project["version"]
    assert f"docker build -t {project['name']}:{project['version']}" in (ROOT / "Dockerfile").read_text()

    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] >= 1
    gpu_types = {n: t for n, t in types.items() if n != cfg["head_node_type"] and t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker type with GPUs"
    for node_type in gpu_types.values():
        assert node_type["min_workers"] == 0  # nothing runs (or is billed) between nightly runs
        assert 0 < node_type["max_workers"] <= cfg["max_workers"]
        assert node_type["resources"]["CPU"] >= 1
    assert sum(t.get("min_workers", 0) for t in types.values()) <= cfg["max_workers"]


def test_cluster_start_commands_use_explicit_ports():
    cfg = _cluster()
    head = " ".join(cfg["head_start_ray_commands"])
    worker = " ".join(cfg["worker_start_ray_commands"])
    assert re.search(r"ray start --head\b", head)
    for flag in ("--port=6379", "--object-manager-port=", "--node-manager-port=", "--dashboard-port=",
                 "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert flag in head, flag
    assert "--address=$RAY_HEAD_IP:6379" in worker
    assert "--object-manager-port=" in worker and "--node-manager-port=" in worker


def test_cluster_keeps_dashboard_and_job_api_off_the_internet():
    cfg = _cluster()
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    values = list(_strings(cfg))
    assert not [v for v in values if "0.0.0.0" in v or "::/0" in v], "a port or listener open to any address"
    for rule in cfg["provider"].get("security_group", {}).get("IpPermissions", []):
        assert rule.get("FromPort") != 8265 and rule.get("ToPort") != 8265
    assert "ray dashboard cluster.yaml" in (ROOT / "cluster.yaml").read_text()


def test_cluster_yaml_holds_no_secrets():
    text = (ROOT / "cluster.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    lowered = text.lower()
    for key in ("aws_secret_access_key", "aws_access_key_id", "ssh_private_key", "password:", "token:"):
        assert key not in lowered, key


@pytest.fixture
def local_init(monkeypatch):
    """init_ray(config from overrides) for a local Ray, with ray.init recorded instead of run:
    returns the keyword arguments of each ray.init call."""
    import ray

    from forecaster import runtime
    from forecaster.config import load_config

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])

    def init(overrides):
        calls = []
        monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
        runtime.init_ray(load_config(None, overrides))
        return calls

    return init


@pytest.mark.parametrize("overrides,dashboard", [([], False), (["ray.dashboard=true"], True)])
def test_local_ray_starts_without_dashboard_unless_asked(local_init, overrides, dashboard):
    calls = local_init(overrides)
    assert calls[0]["include_dashboard"] is dashboard
    # without the state API, Ray Train's placement-group cleaner would warn all through training
    hook = calls[0]["runtime_env"].get("worker_process_setup_hook")
    assert hook == ("forecaster.console.quiet_ray_worker" if dashboard else "forecaster.runtime.setup_local_worker")


def test_quiet_placement_group_cleaner_keeps_its_errors():
    import importlib
    import logging

    from forecaster import runtime

    importlib.import_module(runtime.CLEANER_LOGGER)  # the module (and its logger) exists in this Ray
    logger = logging.getLogger(runtime.CLEANER_LOGGER)
    level = logger.level
    try:
        runtime.quiet_placement_group_cleaner()
        assert not logger.isEnabledFor(logging.WARNING) and logger.isEnabledFor(logging.ERROR)
    finally:
        logger.setLevel(level)


def test_no_address_starts_a_local_ray_of_its_own_and_an_address_joins(local_init, monkeypatch):
    local = local_init([])[0]
    assert local["address"] == "local" and local["num_cpus"] >= 1  # never a cluster's address file
    joined = local_init(["ray.address=auto"])[0]
    assert joined["address"] == "auto" and "num_cpus" not in joined
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert local_init([])[0]["address"] == "127.0.0.1:6379"


def test_a_local_path_on_a_cluster_of_several_nodes_stops_at_init(local_init, monkeypatch):
    import ray

    from forecaster.config import ConfigError

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}, {"Alive": False}])
    cluster = ["ray.address=auto", "data.uri=s3://b/in"]
    with pytest.raises(ConfigError, match=r"output.uri='/srv/out' is a path on this machine, but the Ray cluster "
                                          r"has 2 nodes.*ray.shared_local_paths=true"):
        local_init([*cluster, "output.uri=/srv/out"])
    with pytest.raises(ConfigError, match="train.storage_path='file:///ckpt'"):
        local_init([*cluster, "output.uri=s3://b/out", "train.storage_path=file:///ckpt"])
    assert local_init([*cluster, "output.uri=s3://b/out"])  # every location on object storage
    assert local_init([*cluster, "output.uri=/nfs/out", "ray.shared_local_paths=true"])  # the user's shared mount
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    assert local_init(["ray.address=auto", "data.uri=/srv/in", "output.uri=/srv/out"])  # one node sees its disk


STALE_CLUSTER_SCRIPT = """
import logging, ray
from forecaster.config import load_config
from forecaster.runtime import init_ray
logging.basicConfig(level=logging.INFO)
init_ray(load_config(None, ["ray.num_cpus=1"]))
print("ANSWER", ray.get(ray.remote(lambda: 42).remote()))
ray.shutdown()
"""


@pytest.mark.ray
def test_a_stopped_clusters_address_file_does_not_stop_a_local_run(local_ray_scripts):
    """A `ray start` cluster killed without `ray stop` leaves <tmp>/ray/ray_current_cluster behind; a plain
    ray.init(num_cpus=...) then tries to join it and fails with ValueError. The job starts its own Ray and
    says which cluster it did not join."""
    done = local_ray_scripts("stale")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ANSWER 42" in done.stdout
    assert "starting a local Ray for this job, not the cluster at 127.0.0.1:1" in done.stderr, done.stderr[-3000:]


def test_local_ray_keeps_idle_workers_as_configured(local_init):
    calls = local_init([]) + local_init(["ray.idle_workers=2"])
    assert [c["_system_config"]["num_workers_soft_limit"] for c in calls] == [0, 2]


IDLE_WORKERS_SCRIPT = """
import os, time
import ray
from forecaster.config import load_config
from forecaster.runtime import init_ray

def descendants(root):
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found

def idle():
    names = []
    for pid in descendants(os.getpid()):
        try:
            names.append(open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[0])
        except OSError:
            pass
    return sum(name.startswith(b"ray::IDLE") for name in names)

init_ray(load_config(None, ["ray.num_cpus=2"]))
ray.get([ray.remote(lambda: os.getpid()).remote() for _ in range(4)])
time.sleep(4)
print("IDLE", idle())
ray.shutdown()
"""


@pytest.fixture(scope="module")
def local_ray_scripts():
    """STALE_CLUSTER_SCRIPT (with a stopped cluster's address file in its RAY_TMPDIR) and IDLE_WORKERS_SCRIPT,
    each a process that starts a local Ray of its own, started together (each mostly waits for its Ray to
    start); returns a function that waits for one by name ("stale", "idle") and gives its CompletedProcess."""
    root = tempfile.mkdtemp(prefix="stale-", dir="/tmp")  # short: Ray's unix sockets live under it
    os.makedirs(os.path.join(root, "ray"))
    with open(os.path.join(root, "ray", "ray_current_cluster"), "w") as fh:
        fh.write("127.0.0.1:1\n")  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    procs = {"stale": start_script(STALE_CLUSTER_SCRIPT, env={**env, "RAY_TMPDIR": root}),
             "idle": start_script(IDLE_WORKERS_SCRIPT, env=env)}
    done: dict[str, subprocess.CompletedProcess] = {}

    def finished(name: str) -> subprocess.CompletedProcess:
        if name not in done:
            done[name] = finish(procs[name], timeout=180)
        return done[name]

    try:
        yield finished
    finally:
        stop(procs.values())
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.ray
def test_local_ray_workers_exit_once_idle(local_ray_scripts):
    """A local Ray started by the job keeps no idle worker process (Ray's default keeps one per CPU,
    each holding the object-store pages it ever wrote)."""
    done = local_ray_scripts("idle")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IDLE 0" in done.stdout, done.stdout + done.stderr[-2000:]
