"""The KubeRay manifests, the `ray up` config and the cluster sweep configs carry what matters.

Manifests: GPU counts (a CPU head, 8-GPU workers), /dev/shm sized, NCCL settings, credentials only through
`secretKeyRef`, Ray token auth in every Ray container, the sweep storage and data on the shared PVC, every
Service ClusterIP (nothing public), and RayJob entrypoints that the real `sweep` CLI parses, naming configs
in the repo that validate. The cluster is big enough for the configs' groups (`sweep.engine.tuner.concurrency`,
the driver's own rule). Sweep configs: matched horizons, 3 seeds, the seed 000/003 baselines, and the
written GPU-hour figures agree with the config and the model they name.
"""

from __future__ import annotations

import math
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import yaml
from packaging.requirements import Requirement

from sweep.cli import build_parser
from sweep.config import SweepConfig
from sweep.core.secrets import is_secret_key
from sweep.engine.resources import concurrency
from trainable.model import GPT

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "docker" / "kuberay"
SWEEP_CONFIGS = ("configs/gpt2-124m-sweep.yaml", "configs/gpt2-350m-sweep.yaml")
CREDENTIAL_ENV = ("RAY_AUTH_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD", "HF_TOKEN")
H100_PEAK = 989e12


def manifests() -> list[dict]:
    docs = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in manifests() if d["kind"] == kind]


def pod_specs(doc: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod spec) of every pod template in a manifest."""
    spec = doc.get("spec") or {}
    name = doc["metadata"]["name"]
    if doc["kind"] == "RayCluster":
        yield f"{name}/head", spec["headGroupSpec"]["template"]["spec"]
        for group in spec["workerGroupSpecs"]:
            yield f"{name}/{group['groupName']}", group["template"]["spec"]
    elif doc["kind"] == "RayJob":
        yield f"{name}/submitter", spec["submitterPodTemplate"]["spec"]
    elif doc["kind"] in ("Deployment", "StatefulSet"):
        yield name, spec["template"]["spec"]


def containers() -> Iterator[tuple[str, dict, dict]]:
    for doc in manifests():
        for where, pod in pod_specs(doc):
            for c in pod["containers"]:
                yield where, c, pod


def cluster() -> dict:
    (rc,) = by_kind("RayCluster")
    return rc


def sweep_configs() -> list[SweepConfig]:
    return [SweepConfig.from_yaml(REPO / p) for p in SWEEP_CONFIGS]


def _quantity_gib(q: str) -> float:
    m = re.fullmatch(r"(\d+)(Gi|Ti)", q)
    assert m, q
    return int(m.group(1)) * (1024 if m.group(2) == "Ti" else 1)


# ---- RayCluster -----------------------------------------------------------------------------------------
def test_ray_version_matches_the_project():
    ray_req = next(Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                   if d.startswith("ray"))
    assert cluster()["spec"]["rayVersion"] in ray_req.specifier


def test_cpu_head_and_eight_gpu_workers():
    spec = cluster()["spec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    for c in head["template"]["spec"]["containers"]:
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    (workers,) = spec["workerGroupSpecs"]
    assert workers["rayStartParams"]["num-gpus"] == "8"
    (c,) = workers["template"]["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 8 == c["resources"]["requests"]["nvidia.com/gpu"]
    assert int(workers["rayStartParams"]["num-cpus"]) <= int(c["resources"]["limits"]["cpu"])
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["NCCL_SOCKET_IFNAME"] and env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"


def test_dev_shm_is_a_sized_memory_volume_on_every_ray_pod():
    for where, pod in pod_specs(cluster()):
        vols = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for c in pod["containers"] for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        shm = vols[mount["name"]]["emptyDir"]
        assert shm["medium"] == "Memory", where
        assert _quantity_gib(shm["sizeLimit"]) >= (64 if "head" not in where else 4), where


@pytest.mark.parametrize("config", SWEEP_CONFIGS)
def test_the_cluster_holds_the_configs_groups(config):
    """With the manifest's worker nodes, the driver's own concurrency rule runs the configured number of
    groups at once, and one seed run fits one node (its DDP ranks stay on NVLink)."""
    cfg = SweepConfig.from_yaml(REPO / config)
    (workers,) = cluster()["spec"]["workerGroupSpecs"]
    gpus, cpus = int(workers["rayStartParams"]["num-gpus"]), float(workers["rayStartParams"]["num-cpus"])
    assert cfg.resources.use_gpu and cfg.resources.workers == gpus == 8
    assert cfg.resources.workers * cfg.resources.cpus_per_worker <= cpus
    nodes = workers["replicas"]
    resources = {"CPU": nodes * cpus, "GPU": float(nodes * gpus)}  # the head adds no CPU or GPU
    assert concurrency(cfg, resources) == cfg.max_concurrent_trials
    assert concurrency(cfg, {"CPU": cpus * len(cfg.seeds), "GPU": float(gpus * len(cfg.seeds))}) == 1


# ---- credentials, auth, exposure -------------------------------------------------------------------------
def test_credentials_come_from_secret_refs_only():
    seen = set()
    for where, c, _ in containers():
        for e in c.get("env", []):
            if is_secret_key(e["name"]) or e["name"] in CREDENTIAL_ENV:
                assert "value" not in e, f"{where}: {e['name']} is written in the manifest"
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "schedsweep-credentials" and ref["key"] in CREDENTIAL_ENV
                seen.add(e["name"])
        assert "envFrom" not in c, f"{where}: envFrom would hand every key of the Secret to this container"
    assert set(CREDENTIAL_ENV) <= seen
    assert by_kind("Secret") == []  # made with kubectl (docs/cluster.md), never committed


def test_mlflow_and_database_credentials_reach_only_the_pods_that_use_them():
    for where, c, _ in containers():
        names = {e["name"] for e in c.get("env", [])}
        if "h100x8" in where or "submitter" in where:
            assert not names & {"MLFLOW_TRACKING_PASSWORD", "PGPASSWORD"}, where


def test_every_ray_container_uses_token_auth():
    ray_pods = [(w, c) for w, c, _ in containers() if w.startswith("schedsweep/") or "submitter" in w]
    assert len(ray_pods) >= 5
    for where, c in ray_pods:
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", where
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "RAY_AUTH_TOKEN", where


def test_nothing_is_exposed_beyond_the_cluster():
    assert by_kind("Ingress") == []
    services = by_kind("Service")
    assert {s["metadata"]["name"] for s in services} >= {"mlflow", "postgres", "optuna-dashboard"}
    for s in services:
        assert s["spec"].get("type", "ClusterIP") == "ClusterIP", s["metadata"]["name"]
    assert cluster()["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    for where, c, _ in containers():
        assert not any("hostPort" in p for p in c.get("ports", [])), where


def test_one_image_everywhere():
    images = {c["image"] for w, c, _ in containers() if "postgres" not in c["image"]}
    assert len(images) == 1


# ---- storage and entrypoints ------------------------------------------------------------------------------
def test_sweep_storage_data_and_artifacts_are_on_the_shared_pvc():
    (pvc,) = [p for p in by_kind("PersistentVolumeClaim") if p["metadata"]["name"] == "schedsweep-shared"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    mounted = {}
    for where, c, pod in containers():
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                  if "persistentVolumeClaim" in v}
        for m in c.get("volumeMounts", []):
            if claims.get(m["name"]) == "schedsweep-shared":
                mounted[where] = m["mountPath"]
    assert {"schedsweep/head", "schedsweep/h100x8", "mlflow"} <= set(mounted)
    root = mounted["schedsweep/h100x8"]
    assert len(set(mounted.values())) == 1
    for cfg in sweep_configs():
        assert cfg.storage.startswith(root + "/") and str(cfg.trainer.data.dir).startswith(root + "/")
    (mlflow,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    cmd = mlflow["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--artifacts-destination") + 1].startswith(root + "/")


def test_rayjob_entrypoints_parse_and_name_configs_that_validate():
    parser = build_parser()
    jobs = {j["metadata"]["name"]: j for j in by_kind("RayJob")}
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", (REPO / "docker" / "Dockerfile").read_text(), re.M)
    commands = set()
    cfgs = {c.name: c for c in sweep_configs()}
    for name, job in jobs.items():
        assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster()["metadata"]["name"]}
        words = shlex.split(job["spec"]["entrypoint"])
        assert words[0] == "sweep"
        args = parser.parse_args(words[1:])
        runtime_env = yaml.safe_load(job["spec"].get("runtimeEnvYAML") or "{}")
        assert not any(is_secret_key(k) for k in (runtime_env.get("env_vars") or {})), name
        # Relative config paths resolve in the image's copy of the repository.
        assert runtime_env["working_dir"] == workdir, name
        if args.command == "run":
            cfg = SweepConfig.from_yaml(REPO / args.config)  # exists in the repo and validates
            assert cfg.name in cfgs
        elif args.command == "resume":
            assert args.name in cfgs and args.storage == cfgs[args.name].storage
        elif args.command == "data":
            assert {str(c.trainer.data.dir) for c in cfgs.values()} == {args.out}
        commands.add(args.command)
    assert commands == {"run", "resume", "data"}


def test_sweep_configs_point_at_the_in_cluster_services():
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    for cfg in sweep_configs():
        for uri in (cfg.mlflow.tracking_uri, cfg.optuna.storage):
            m = re.match(r"[\w+]+://(?:(\w+)@)?([\w-]+):(\d+)/?", uri)
            assert m and ":" not in (m.group(1) or ""), uri  # a user name at most, never a password
            ports = [p["port"] for p in services[m.group(2)]["spec"]["ports"]]
            assert int(m.group(3)) in ports


# ---- ray up -----------------------------------------------------------------------------------------------
def test_ray_up_config_uses_h100_nodes_shared_storage_and_no_public_dashboard():
    d = yaml.safe_load((REPO / "docker" / "ray-up-aws.yaml").read_text())
    assert d["provider"]["type"] == "aws"
    head = d["available_node_types"][d["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    (gpu_type,) = [t for n, t in d["available_node_types"].items() if n != d["head_node_type"]]
    assert gpu_type["node_config"]["InstanceType"] == "p5.48xlarge" and gpu_type["resources"]["GPU"] == 8
    run_opts = " ".join(d["docker"]["run_options"])
    assert re.search(r"--shm-size=(\d+)g", run_opts) and "/shared:/shared" in run_opts
    assert "--gpus all" in d["docker"]["worker_run_options"]
    manifest_images = {c["image"] for _, c, _ in containers() if "postgres" not in c["image"]}
    assert d["docker"]["image"] in manifest_images
    head_start = " ".join(d["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "RAY_AUTH_MODE=token" in run_opts
    assert set(d["file_mounts"]) == {"~/.ray/auth_token", "~/.pgpass", "~/.mlflow/credentials"}
    for cfg in sweep_configs():
        cpus = gpu_type["resources"]["CPU"]
        nodes = math.ceil(cfg.max_concurrent_trials * len(cfg.seeds) * cfg.resources.workers / 8)
        assert nodes <= gpu_type["max_workers"]
        assert concurrency(cfg, {"CPU": nodes * cpus, "GPU": nodes * 8.0}) == cfg.max_concurrent_trials
    assert not re.search(r"(password|token)\s*[:=]\s*\w{8,}", (REPO / "docker" / "ray-up-aws.yaml").read_text(), re.I)


# ---- the sweep configs ----------------------------------------------------------------------------------
def test_sweeps_answer_the_seed_question_on_matched_horizons():
    small, medium = sweep_configs()
    presets = [{b["preset"] for b in c.baselines} for c in (small, medium)]
    assert presets[0] == presets[1] >= {"seed000_cosine", "seed003_hold_cosine_poly", "seed003_sqrt_hold_cosine",
                                        "nanogpt_cosine"}
    assert small.seeds == medium.seeds == (0, 1, 2)
    ratios = []
    for cfg in (small, medium):
        assert cfg.backend == "trainer" and cfg.trainer.device == "cuda" and cfg.trainer.dtype == "bfloat16"
        assert cfg.trainer.compile and cfg.trainer.checkpoint.every == 1
        n = _model(cfg).num_params(non_embedding=True)
        ratios.append(cfg.max_step() * cfg.trainer.tokens_per_step(cfg.resources.workers) / n)
    assert all(19.5 < r < 20.5 for r in ratios), ratios  # D = 20 N at both sizes
    assert small.trainer.tokens_per_step(8) == medium.trainer.tokens_per_step(8) == 524_288


def _model(cfg: SweepConfig) -> GPT:
    with torch.device("meta"):
        return GPT(cfg.trainer.model.gpt)


def _written(text: str, label: str) -> float:
    m = re.search(rf"{label}.*?= ([\d.]+) GPU-hours", text, re.S)
    assert m, label
    return float(m.group(1))


@pytest.mark.parametrize("config", SWEEP_CONFIGS)
def test_written_cost_matches_the_config(config):
    """Recompute the comment's GPU-hours from the config, the model's FLOPs per token, the stated MFU and
    H100 peak, and ASHA's rungs: the figures next to the config must not drift from it."""
    text = (REPO / config).read_text()
    cfg = SweepConfig.from_yaml(REPO / config)
    mfu = float(re.search(r"assumed MFU (\d+) %", text).group(1)) / 100
    model = _model(cfg)
    steps = cfg.max_step()
    tokens = steps * cfg.trainer.tokens_per_step(cfg.resources.workers)
    per_token = model.flops_per_token(cfg.trainer.batch.seq_len)
    evals = math.ceil(steps / cfg.trainer.eval.interval)
    flops = per_token * tokens + evals * cfg.trainer.eval.max_tokens * per_token / 3
    group_h = len(cfg.seeds) * flops / (mfu * H100_PEAK) / 3600
    assert f"6 N D = {6 * model.num_params(non_embedding=True) * tokens:.3e}".replace("e+", "e") in text
    upper = (len(cfg.baselines) + cfg.budget) * group_h
    assert _written(text, "upper bound") == pytest.approx(upper, rel=0.005)
    # A searched group's expected share of T under ASHA: survivors shrink by the reduction factor per rung.
    done, prev, survive = 0.0, 0, 1.0
    for rung in cfg.scheduler.milestones(steps):
        done, prev, survive = done + survive * (rung - prev), rung, survive / cfg.scheduler.reduction_factor
    frac = (done + survive * (steps - prev)) / steps
    assert _written(text, "with ASHA") == pytest.approx((len(cfg.baselines) + cfg.budget * frac) * group_h, rel=0.005)
    # Cooldown probes: 0.2 x the (eval-aligned) rung step at every rung a group reaches; baselines at all.
    assert cfg.scheduler.rung_metric == "cooldown"
    interval = cfg.trainer.eval.interval
    probes = [max(1, round(cfg.scheduler.cooldown_frac * min(steps, math.ceil(m / interval) * interval)))
              for m in cfg.scheduler.milestones(steps)]
    reach = [cfg.scheduler.reduction_factor ** -k for k in range(len(probes))]
    extra = (len(cfg.baselines) * sum(probes) + cfg.budget * sum(r * p for r, p in zip(reach, probes))) / steps
    assert _written(text, "cooldown probes") == pytest.approx(extra * group_h, rel=0.01)
