"""``sweep data prepare`` through `sweep.cli.main`: output, summary, and bad input (exit 2, nothing created)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep.cli import main
from trainable.data.prepare import load_meta


def write_jsonl(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"text": f"Document number {i} says hello to the world {i % 7} times."}) + "\n"
                            for i in range(n)))
    return path


def test_prepare_files_prints_what_it_wrote(tmp_path: Path, capsys) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", 200)
    out = tmp_path / "out"
    code = main(["data", "prepare", "--files", str(tmp_path / "*.jsonl"), "--out", str(out),
                 "--val-fraction", "0.2", "--shard-tokens", "700", "--num-proc", "2"])
    assert code == 0
    meta = load_meta(out)
    printed = capsys.readouterr().out
    for split in ("train", "val"):
        info = meta["splits"][split]
        assert f"{info['tokens']:,} tokens" in printed and f"{info['bytes']:,} bytes" in printed
    assert meta["source"]["files"] == [str(src)]
    assert len(meta["splits"]["train"]["shards"]) > 1


def test_prepare_bundled_slice(tmp_path: Path) -> None:
    out = tmp_path / "wiki"
    assert main(["data", "prepare", "--bundled", "--out", str(out), "--max-tokens", "30000"]) == 0
    meta = load_meta(out)
    assert meta["source"]["kind"] == "bundled"
    assert meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"] == 30000


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--val-tokens", "0"], "--val-tokens"),
        (["--shard-tokens", "-1"], "--shard-tokens"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--num-proc", "0"], "--num-proc"),
        (["--out", "FULL"], "--out"),
        (["--text-field", "body"], "--text-field"),
    ],
)
def test_bad_input_exits_2_naming_the_option(tmp_path: Path, capsys, extra: list[str], option: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", 20)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    extra = [str(tmp_path / "full") if e == "FULL" else e for e in extra]
    argv = ["data", "prepare", "--files", str(tmp_path / "a.jsonl"), *extra]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "out")]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sweep: error: {option}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]


def test_missing_files_and_missing_source(tmp_path: Path, capsys) -> None:
    assert main(["data", "prepare", "--files", str(tmp_path / "*.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("sweep: error: --files: ")
    with pytest.raises(SystemExit) as exc:  # argparse's own check: exactly one source
        main(["data", "prepare", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "--dataset" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bundled_without_out_fills_the_shared_cache(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCHEDSWEEP_CACHE", str(tmp_path / "cache"))
    assert main(["data", "prepare", "--bundled"]) == 0
    folders = list((tmp_path / "cache" / "data").iterdir())
    prepared = [p for p in folders if (p / "meta.json").is_file()]
    assert len(prepared) == 1
    assert f"wrote {prepared[0]}" in capsys.readouterr().out
