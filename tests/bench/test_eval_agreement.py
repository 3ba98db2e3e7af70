"""bench/eval_agreement.py: reading the reports of several `styles eval --all` runs and comparing verdicts and
drafts across them (reports written here by hand in the shape `styles eval` writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_helpers import load_bench

eval_agreement = load_bench("eval_agreement")


def _change(mean: float, p: float) -> dict[str, Any]:
    return {"mean": mean, "interval": [mean - 0.1, mean + 0.1], "wilcoxon": {"p_value": p}}


def _write(styles: Path, style: str, verdict: str, drafts: list[str], capability: str = "AVX512") -> None:
    folder = styles / style / "adapters" / "v2" / "eval"
    folder.mkdir(parents=True)
    report = {
        "style": style,
        "version": "v2",
        "machine": {"dtype": "float32", "cpu_capability": capability},
        "drafts_per_variant": len(drafts),
        "table": [
            {"variant": "base", "attribution_accuracy": 0.25},
            {"variant": "v2", "attribution_accuracy": 0.75},
        ],
        "paired": {"v2": {"style_probability": _change(0.3, 0.0001), "profile_distance": _change(-1.0, 0.02)}},
        "verdict": {"v2": {"verdict": verdict, "reason": "..."}},
        "drafts": {"base": [f"base draft {i}" for i in range(len(drafts))], "v2": drafts},
    }
    (folder / "against-base.json").write_text(json.dumps(report), encoding="utf-8")


def test_agreeing_runs_count_identical_drafts_by_position(tmp_path: Path) -> None:
    _write(tmp_path / "a", "plain", "the adapter moves the voice", ["one", "two", "three", "four"])
    _write(tmp_path / "b", "plain", "the adapter moves the voice", ["one", "TWO", "three", "four"], "AVX2")
    result = eval_agreement.compare(
        {"a": eval_agreement.read_run(tmp_path / "a"), "b": eval_agreement.read_run(tmp_path / "b")}
    )
    rows = result["styles"]["plain v2"]["rows"]
    assert [r["same_drafts"] for r in rows] == [None, "7/8"]  # base drafts all equal, one adapter draft differs
    assert rows[1]["machine"] == "float32 AVX2"
    assert rows[0]["p_style"] == "+0.300 [+0.200, +0.400] p<0.001"
    assert result["styles"]["plain v2"]["verdicts_agree"]


def test_a_differing_verdict_fails_the_run_and_shows_in_the_table(tmp_path: Path, capsys: Any) -> None:
    _write(tmp_path / "a", "plain", "the adapter moves the voice", ["one"])
    _write(tmp_path / "b", "plain", "no evidence", ["one"])
    _write(tmp_path / "b", "other", "no evidence", ["x"])
    code = eval_agreement.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--json", str(tmp_path / "out.json")])
    assert code == 1
    out = capsys.readouterr().out
    assert "verdicts agree: **no**" in out
    assert "not in every run (not compared): other v2" in out
    assert json.loads((tmp_path / "out.json").read_text())["styles"]["plain v2"]["verdicts_agree"] is False


def test_reports_without_a_verdict_are_not_read(tmp_path: Path) -> None:
    _write(tmp_path / "a", "plain", "no evidence", ["one"])
    path = tmp_path / "a" / "plain" / "adapters" / "v2" / "eval" / "against-base.json"
    data = json.loads(path.read_text())
    del data["verdict"]
    path.write_text(json.dumps(data))
    assert eval_agreement.read_run(tmp_path / "a") == {}
