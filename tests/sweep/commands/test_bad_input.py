"""Bad input found by probing the CLI as a new user would: each case is one line `sweep: error: FIELD: ...`
on stderr, exit code 2, and nothing created or changed (regression tests for the cases of issue #15 fixed so
far: input decoding and YAML, sweep names that point outside the storage, a damaged saved config, argparse's
own errors).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from sweep.cli import main
from trainable.yaml_input import parse_yaml

VALID = {"name": "ok", "simulator": {"total_steps": 200, "eval_interval": 50}, "search_space": "wsd",
         "baselines": ["constant"], "seeds": [0, 1, 2], "budget": 1}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(tmp_path: Path, capsys, argv: list[str], field: str) -> str:
    """Run `sweep ARGV` in `tmp_path`; assert exit 2, one line naming `field`, and no file created or changed."""
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        try:
            code = main(argv)
        except SystemExit as err:  # argparse's own exits
            code = err.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith(f"sweep: error: {field}"), lines[0]
    assert snapshot(tmp_path) == before, "a refused command created or changed files"
    return lines[0]


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# ---- config files ------------------------------------------------------------------------------------------
def test_a_config_that_is_not_utf8_is_one_line_naming_the_byte(tmp_path: Path, capsys) -> None:
    write(tmp_path / "c.yaml", b"name: caf\xe9\n")
    line = refused(tmp_path, capsys, ["run", "c.yaml"], "config")
    assert "c.yaml is not UTF-8 text (byte 0xe9 at offset 9)" in line
    refused(tmp_path, capsys, ["train", "--config", "c.yaml"], "config")


def test_yaml_errors_name_the_file_line_and_column_in_one_line(tmp_path: Path, capsys) -> None:
    write(tmp_path / "c.yaml", "name: ok\nseeds: [0, 1\nbudget: 2\n")
    line = refused(tmp_path, capsys, ["run", "c.yaml"], "config")
    assert "c.yaml line 3, column" in line and "<unicode string>" not in line


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path: Path, capsys) -> None:
    write(tmp_path / "c.yaml", yaml.safe_dump(VALID) + "budget: 5\n")
    line = refused(tmp_path, capsys, ["run", "c.yaml"], "config")
    assert "key 'budget' is given twice" in line


def test_nesting_too_deep_and_a_top_level_list_are_refused(tmp_path: Path, capsys) -> None:
    write(tmp_path / "deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in refused(tmp_path, capsys, ["run", "deep.yaml"], "config")
    write(tmp_path / "list.yaml", "- name: ok\n")
    assert "mapping at the top level, not a list" in refused(tmp_path, capsys, ["run", "list.yaml"], "config")


def test_an_unhashable_model_name_is_a_config_error(tmp_path: Path, capsys) -> None:
    write(tmp_path / "c.yaml", "name: x\ntrainer: {model: {name: [tiny]}}\nsearch_space: wsd\n")
    refused(tmp_path, capsys, ["run", "c.yaml"], "trainer.model.name")


def test_numbers_in_exponent_form_without_a_dot_are_floats() -> None:
    # PyYAML (YAML 1.1) reads 2e-1 as a string: cooldown_frac: 2e-1 was refused as text, lr: 3e-3 accepted.
    assert parse_yaml("a: 2e-1\nb: 1E5\nc: -3e2\nd: e5\ne: 1e\n", "t") == {"a": 0.2, "b": 1e5, "c": -300.0,
                                                                           "d": "e5", "e": "1e"}


# ---- sweep names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["resume", "../outside", "--storage", "sweeps"],
                                  ["confirm", "../outside", "--storage", "sweeps"],
                                  ["report", "../outside", "--storage", "sweeps"],
                                  ["resume", "a/b", "--storage", "sweeps"],
                                  ["resume", ".hidden", "--storage", "sweeps"]])
def test_a_sweep_name_never_reaches_outside_the_storage(tmp_path: Path, capsys, argv: list[str]) -> None:
    # A valid sweep folder just outside the storage: resume used to read it and start resuming it.
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "outside").mkdir()
    write(tmp_path / "outside" / "sweep.yaml", yaml.safe_dump({**VALID, "name": "outside"}))
    refused(tmp_path, capsys, argv, "name")


@pytest.mark.parametrize("saved", [b"name: [ok\n", b"- 1\n- 2\n", b"", b"name: ok\nbudget: -3\n", b"\xff\xfe"])
def test_a_damaged_saved_config_is_one_line_naming_its_file(tmp_path: Path, capsys, saved: bytes) -> None:
    (tmp_path / "sweeps" / "ok").mkdir(parents=True)
    write(tmp_path / "sweeps" / "ok" / "sweep.yaml", saved)
    for command in ("resume", "report"):
        line = refused(tmp_path, capsys, [command, "ok", "--storage", "sweeps"], "")
        assert "sweeps/ok/sweep.yaml" in line, line


# ---- the command line itself -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, field", [(["resume"], "name: required"),
                                         (["confirm", "x", "--top", "abc"], "--top: invalid int value"),
                                         (["bogus"], "COMMAND: invalid choice"),
                                         (["run", "--nope"], "--nope: unrecognized argument")])
def test_argparse_errors_are_one_line_without_the_usage_block(tmp_path: Path, capsys, argv, field) -> None:
    refused(tmp_path, capsys, argv, field)


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("sweep ")


# ---- store URIs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri", ["file:///tmp/x", ".", "foo://x", "not a uri", "sqlite://rel.db", "http://",
                                 "postgresql://u:pw@127.0.0.1/db"])
def test_a_tracking_uri_mlflow_cannot_use_is_refused_before_reading(tmp_path: Path, capsys, uri: str) -> None:
    line = refused(tmp_path, capsys, ["report", "nope", "--tracking-uri", uri], "--tracking-uri")
    assert "pw" not in line  # a password in a URI is never printed


def test_report_refuses_at_once_a_tracking_server_that_does_not_answer(tmp_path: Path, capsys) -> None:
    import time

    from servers import free_port

    started = time.monotonic()
    line = refused(tmp_path, capsys, ["report", "nope", "--tracking-uri", f"http://127.0.0.1:{free_port()}"],
                   "--tracking-uri")
    assert "no MLflow server answers" in line and time.monotonic() - started < 30  # it once waited 200 s


@pytest.mark.parametrize("content", [b"", b"garbage, not a database"])
def test_an_empty_or_garbage_store_file_is_left_as_it_was(tmp_path: Path, capsys, content: bytes) -> None:
    # MLflow would turn a 0-byte file into a 954 KB database (and fail on garbage with a traceback).
    write(tmp_path / "m.db", content)
    refused(tmp_path, capsys, ["report", "nope", "--tracking-uri", "sqlite:///m.db"], "--tracking-uri")


@pytest.mark.parametrize("section, field", [({"mlflow": {"tracking_uri": "bogus://x"}}, "mlflow.tracking_uri"),
                                            ({"mlflow": {"tracking_uri": "not a uri"}}, "mlflow.tracking_uri"),
                                            ({"optuna": {"storage": "bogus://x"}}, "optuna.storage"),
                                            ({"optuna": {"storage": "sqlite://rel.db"}}, "optuna.storage")])
def test_store_uris_in_a_config_are_checked_before_ray_starts(tmp_path: Path, capsys, section, field) -> None:
    write(tmp_path / "c.yaml", yaml.safe_dump({**VALID, **section}))
    refused(tmp_path, capsys, ["run", "c.yaml"], field)


# ---- numbers out of any sane range, resources this machine cannot hold ---------------------------------------
@pytest.mark.parametrize("over, field", [
    ({"trainer": {"optimizer": {"lr": 1e30}}}, "trainer.optimizer.lr"),
    ({"trainer": {"horizon": {"steps": 10**30}}}, "trainer.horizon.steps"),
    ({"trainer": {"model": {"name": "tiny", "n_layer": 1_000_000}}}, "trainer.model.n_layer"),
    ({"seeds": [0, 2**70]}, "seeds[1]"),
    ({"budget": 10**12}, "budget"),
])
def test_extreme_values_are_refused_with_the_bound(tmp_path: Path, capsys, over, field) -> None:
    cfg = {k: v for k, v in VALID.items() if k != "simulator"}
    cfg.update(over)
    write(tmp_path / "c.yaml", yaml.safe_dump(cfg))
    assert "must be <= " in refused(tmp_path, capsys, ["run", "c.yaml"], field)


def test_a_group_this_machine_cannot_hold_is_refused_before_ray_starts(tmp_path: Path, capsys, monkeypatch) -> None:
    # It used to be checked only after Ray had started (15-35 s on a loaded 2-core machine).
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = {k: v for k, v in VALID.items() if k != "simulator"}
    write(tmp_path / "c.yaml", yaml.safe_dump({**cfg, "resources": {"workers": 1000}}))
    line = refused(tmp_path, capsys, ["run", "c.yaml"], "resources")
    assert "this machine" in line and "1000 workers" in line


def test_plan_seeds_refuses_a_ratio_its_power_cannot_be_computed_for(tmp_path: Path, capsys) -> None:
    # It printed power nan and "2 seeds needed" with exit 0.
    refused(tmp_path, capsys, ["plan-seeds", "--effect", "1e308", "--std", "1e-308"], "--effect")


@pytest.mark.parametrize("space, field", [({"shape": ["cosine", "bogus", "linear"]}, "search_space.shape"),
                                          ({"floor": {"choices": [0.0, 2.0, 0.5]}}, "search_space.floor"),
                                          ({"preset": ["wsd_sqrt", "bogus_preset", "nanogpt_cosine"]},
                                           "search_space.preset")])
def test_every_choice_of_an_inline_search_space_is_checked(tmp_path: Path, capsys, space, field) -> None:
    # Only the first and last choices were: the middle one then failed a third of TPE's suggestions mid-sweep.
    write(tmp_path / "c.yaml", yaml.safe_dump({**VALID, "search_space": space}))
    line = refused(tmp_path, capsys, ["run", "c.yaml"], field)
    assert "choice " in line


# ---- outputs and data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, field", [(["-o", "/proc/x.png"], "--output"), (["-o", "."], "--output"),
                                         (["-o", "x.png/inside.png"], "--output"),
                                         (["--steps", "2147483648"], "--steps")])
def test_schedules_plot_refuses_outputs_it_cannot_write(tmp_path: Path, capsys, args, field) -> None:
    write(tmp_path / "x.png", b"a file, not a folder")
    refused(tmp_path, capsys, ["schedules", "plot", "constant", *args], field)


@pytest.mark.parametrize("name, content", [("bad.jsonl", b'{"text": "ok"}\nnot json at all\n'),
                                           ("latin.txt", b"caf\xe9 au lait\n")])
def test_data_prepare_refuses_files_it_cannot_read_in_one_line(tmp_path: Path, capsys, name, content) -> None:
    write(tmp_path / name, content)
    line = refused(tmp_path, capsys, ["data", "prepare", "--files", name, "--out", "out"], "--files")
    assert "cannot read" in line


def test_data_prepare_refuses_an_unreachable_hub_at_once(tmp_path: Path, capsys, monkeypatch) -> None:
    import time

    # An address nothing listens on stands for the hub of a machine without internet (it took 25 s of retries).
    from servers import free_port

    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    line = refused(tmp_path, capsys, ["data", "prepare", "--dataset", "nobody/nothing", "--out", "out"], "--dataset")
    assert "cannot be reached" in line and time.monotonic() - started < 20


# ---- what this machine cannot run ----------------------------------------------------------------------------
ONE_SEED_TRAINER = {"name": "t", "search_space": "wsd", "baselines": ["constant"], "seeds": [0]}


@pytest.mark.parametrize("over, field", [
    ({"storage": "/proc/x"}, "storage"),
    ({"storage": "c.yaml/sub"}, "storage"),
    ({"trainer": {"data": {"dir": "no-such-folder", "bundled": False}}}, "trainer.data.dir"),
    ({"trainer": {"data": {"dir": ".", "bundled": False}}}, "trainer.data.dir"),  # no shards in it
])
def test_a_sweep_that_cannot_run_here_is_refused_before_ray_starts(tmp_path: Path, capsys, monkeypatch, over,
                                                                    field) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    write(tmp_path / "c.yaml", yaml.safe_dump({**ONE_SEED_TRAINER, **over}))
    refused(tmp_path, capsys, ["run", "c.yaml"], field)


def test_device_cuda_without_cuda_is_refused_before_anything_starts(tmp_path: Path, capsys, monkeypatch) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device cuda is valid here")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    write(tmp_path / "c.yaml", yaml.safe_dump({**ONE_SEED_TRAINER, "trainer": {"device": "cuda"}}))
    refused(tmp_path, capsys, ["run", "c.yaml"], "trainer.device")
    refused(tmp_path, capsys, ["train", "--set", "device=cuda"], "device")


def test_sweep_train_refuses_more_processes_than_the_machine_can_run(tmp_path: Path, capsys) -> None:
    refused(tmp_path, capsys, ["train", "--nproc", "1000"], "--nproc")


def test_confirm_on_a_sweep_that_never_saved_tune_state_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "sweeps" / "ok" / "tune").mkdir(parents=True)
    write(tmp_path / "sweeps" / "ok" / "sweep.yaml", yaml.safe_dump(VALID))
    refused(tmp_path, capsys, ["confirm", "ok", "--storage", "sweeps"], "name")


@pytest.mark.parametrize("command", [["run"], ["resume"], ["report"], ["confirm"], ["plan-seeds"], ["train"],
                                     ["schedules", "list"], ["schedules", "plot"], ["data", "prepare"]])
def test_every_subcommand_help_has_a_description_and_an_example(capsys, command: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "-h"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert any(line.strip().startswith(f"sweep {' '.join(command)}") for line in out.splitlines()), out
    assert len(out.split("\n\n")[1].strip()) > 20, out  # a description after the usage block


def test_preset_sources_name_the_seed_not_a_path_on_some_machine(capsys) -> None:
    assert main(["schedules", "list", "-v"]) == 0
    sources = [line for line in capsys.readouterr().out.splitlines() if "source:" in line]
    assert any("seed 000" in line for line in sources)
    assert not any(line.split("source:", 1)[1].strip().startswith(("/", "~", ".")) for line in sources), sources


def test_script_keep_checkpoints_and_the_launchers_own_variables_are_checked(tmp_path: Path, capsys) -> None:
    write(tmp_path / "train.py", "print('hi')\n")
    base = {**{k: v for k, v in VALID.items() if k != "simulator"},
            "script": {"path": "train.py", "horizon_steps": 10}}
    write(tmp_path / "keep.yaml", yaml.safe_dump({**base, "script": {**base["script"], "keep_checkpoints": 0}}))
    assert "must be >= 1" in refused(tmp_path, capsys, ["run", "keep.yaml"], "script.keep_checkpoints")
    write(tmp_path / "env.yaml", yaml.safe_dump({**base, "script": {**base["script"],
                                                                    "env": {"SCHEDSWEEP_DEVICE": "cuda:3"}}}))
    assert "set by the launcher" in refused(tmp_path, capsys, ["run", "env.yaml"], "script.env.SCHEDSWEEP_DEVICE")
