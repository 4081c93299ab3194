"""`sweep schedules list|plot` through `sweep.cli.main`, and `plot_schedules` itself."""

from __future__ import annotations

import json

import pytest

from search_spaces import get_preset, list_presets, list_search_spaces
from sweep.cli import main
from sweep.core.schedule_plot import plot_schedules

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_list(capsys):
    assert main(["schedules", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_presets() + list_search_spaces():
        assert f" {name} " in out
    assert len(out.strip().splitlines()) == 1 + len(list_presets()) + len(list_search_spaces())


def test_list_verbose(capsys):
    assert main(["schedules", "list", "-v"]) == 0
    out = capsys.readouterr().out
    assert "cooldown_frac = 0.2" in out and "lr_decay_iters = (from T)" in out and "hold_share:" in out


def test_plot_presets_and_files(tmp_path, capsys):
    shape_yaml = tmp_path / "mine.yaml"
    shape_yaml.write_text("schedule: {warmup_frac: 0.05, hold_frac: 0.6, shape: sqrt, floor: 0.1}\n")
    segments_json = tmp_path / "two.json"
    segments_json.write_text(json.dumps({"segments": [{"duration": 0.5, "end": 1.0, "curve": "cosine"},
                                                      {"duration": 0.5, "end": 0.0}]}))
    out = tmp_path / "plots" / "s.png"
    code = main(["schedules", "plot", "nanogpt_cosine", "wsd_sqrt", str(shape_yaml), str(segments_json),
                 "{preset: wsd_exp, cooldown_frac: 0.3}", "--steps", "300", "-o", str(out)])
    assert code == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 5000
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("make_args, needle", [
    (lambda tmp: ["no_such_schedule"], "no_such_schedule"),
    (lambda tmp: [str(tmp / "bad.yaml")], "bad.yaml: schedule.hold_frac"),
    (lambda tmp: [str(tmp / "broken.json")], "broken.json"),
    (lambda tmp: ["{preset: wsd_sqrt, cooldown: 0.1}"], "schedule.cooldown"),
])
def test_plot_bad_name_exits_2(tmp_path, capsys, make_args, needle):
    (tmp_path / "bad.yaml").write_text("warmup_frac: 0.5\nhold_frac: 0.2\n")
    (tmp_path / "broken.json").write_text("{not json")
    out = tmp_path / "never.png"
    code = main(["schedules", "plot", "wsd_sqrt", *make_args(tmp_path), "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sweep: error: ") and needle in err
    assert not out.exists()  # validated before anything is written


def test_plot_schedules_api(tmp_path):
    path = plot_schedules({"a": get_preset("constant"), "b": get_preset("linear_to_zero")}, 1, tmp_path / "x.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
