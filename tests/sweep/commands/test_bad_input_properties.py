"""A property test of the CLI's input contract over generated inputs (issue #15): mutations of every config in
`configs/`, random bytes, deep nesting and odd unicode, given to `sweep run` (and the saved-config readers of
`sweep resume` and `sweep report`).

Every input must end one of two ways: refused with exit 2, one line `sweep: error: FIELD: ...` and no file
created or changed; or accepted, which here means reaching the moment Ray would start (a guard stops it
there, as the probe that found the holes did). Never a traceback, never Ray started on bad input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sweep.engine.tuner
from sweep.cli import main

REPO = Path(__file__).resolve().parents[3]
# The sweep configs (the others in configs/ are `sweep train` configs: a sweep refuses them at once).
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if "search_space" in yaml.safe_load(p.read_text()))


class WouldStartRay(Exception):
    """Raised by the guard in place of Ray's start: the input was accepted."""


def leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a nested config (mappings and lists), the root included."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += leaves(v, path + (i,))
    return out


def replaced(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: replaced(node[head], rest, value)}
    copy = list(node)
    copy[head] = replaced(copy[head], rest, value)
    return copy


def deleted(node: Any, path: tuple) -> Any:
    if len(path) == 1:
        if isinstance(node, dict):
            return {k: v for k, v in node.items() if k != path[0]}
        return [v for i, v in enumerate(node) if i != path[0]]
    head = path[0]
    if isinstance(node, dict):
        return {**node, head: deleted(node[head], path[1:])}
    copy = list(node)
    copy[head] = deleted(copy[head], path[1:])
    return copy


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "..", "../x", "/proc/x", "sqlite://x.db", "bogus://x", "cuda", "1e-3", "ünïcødé", "\x00"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


@st.composite
def mutated_config(draw) -> bytes:
    """A config of `configs/`, one to three mutations away (replace a value, delete a key, add one), as YAML."""
    text = draw(st.sampled_from(CONFIGS)).read_text()
    data = yaml.safe_load(text)
    for _ in range(draw(st.integers(1, 3))):
        paths = leaves(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and path:
            data = deleted(data, path)
        elif action == "add" and (parents := [p for p in paths if isinstance(_at(data, p), dict)]):
            parent = draw(st.sampled_from(parents))
            data = replaced(data, parent, {**_at(data, parent), draw(st.text(min_size=1, max_size=8)): draw(VALUES)})
        else:
            data = replaced(data, path, draw(VALUES))
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8")


def _at(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


RAW = st.one_of(
    mutated_config(),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 3000).map(lambda n: ("a: " + "[" * n + "]" * n).encode()),
    st.integers(1, 3000).map(lambda n: ("a:\n" + "".join(" " * i + "- \n" for i in range(n))).encode()),
)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=int(os.environ.get("SCHEDSWEEP_PROPERTY_EXAMPLES", "120")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(raw=RAW, command=st.sampled_from(["run", "resume", "report"]))
def test_every_input_is_refused_in_one_line_or_reaches_the_start(tmp_path_factory, monkeypatch, capsys, raw: bytes,
                                                                  command: str) -> None:
    root = tmp_path_factory.mktemp("case")
    monkeypatch.chdir(root)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def guard(**kwargs) -> None:
        raise WouldStartRay

    monkeypatch.setattr(sweep.engine.tuner, "init_ray", guard)
    if command == "run":
        (root / "c.yaml").write_bytes(raw)
        argv = ["run", "c.yaml"]
    else:  # a damaged or hand-edited saved config, read back by resume and report
        (root / "sweeps" / "s").mkdir(parents=True)
        (root / "sweeps" / "s" / "sweep.yaml").write_bytes(raw)
        argv = [command, "s", "--storage", "sweeps"]
    before = snapshot(root)
    try:
        code = main(argv)
    except WouldStartRay:
        event("accepted: reached Ray's start")
        return  # accepted: every check passed and Ray was about to start
    except SystemExit as err:
        code = err.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("sweep: warning: ")]
    assert code == 2, (code, err[-3000:], raw[:300])
    assert len(lines) == 1 and lines[0].startswith("sweep: error: "), (err[-3000:], raw[:300])
    field = lines[0][len("sweep: error: "):].split(": ", 1)[0]
    assert field.strip(), lines[0]
    assert snapshot(root) == before, "a refused command created or changed files"
    event("refused")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_reaches_the_start_unchanged(tmp_path: Path, monkeypatch, capsys, config: Path) -> None:
    # The control: unmutated configs are accepted (on this machine, the cluster ones only need RAY_ADDRESS set,
    # as under `ray job submit`, for the machine checks to leave them to the cluster).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep.engine.tuner, "init_ray", lambda **kw: (_ for _ in ()).throw(WouldStartRay()))
    data = yaml.safe_load(config.read_text())
    data["storage"] = str(tmp_path / "sweeps")
    if "gpt2" in config.name:
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        try:
            import psycopg  # noqa: F401  (the cluster image installs it: the `cluster` extra)
        except ImportError:
            # Without the driver `sweep run` refuses the PostgreSQL study, rightly (test_bad_input checks that
            # message): the rest of the config is what this control is about.
            data["optuna"]["storage"] = f"sqlite:///{tmp_path}/optuna.db"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(WouldStartRay):
        main(["run", "c.yaml"])
