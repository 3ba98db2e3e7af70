"""Tests of :mod:`worker.lab.eval_inputs`: the shared evaluation briefs, rendered as each style's briefs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from style_helpers import BASE_A, BASE_B, two_base_style, write_version

from worker.engine.adapters import ADAPTER_META
from worker.errors import EvaluationError
from worker.intake.briefs import Brief, ContentType
from worker.lab import eval_inputs
from worker.lab.corpus import load_corpus
from worker.lab.eval_inputs import (
    EVAL_BRIEFS_FILE,
    CorpusSource,
    EvalTopic,
    corpus_folder,
    default_version,
    eval_briefs,
    house_metadata,
    read_eval_topics,
    voice_corpus,
)
from worker.styles.catalog import load_style

EVAL_BRIEFS = """\
target_words: 60
briefs:
  - {id: bread, title: Keeping bread fresh}
  - {id: bikes, title: Choosing a bicycle}
  - {id: typing, title: Learning to type}
"""


def test_read_eval_topics_and_render_them_per_style(tmp_path: Path) -> None:
    path = tmp_path / EVAL_BRIEFS_FILE
    path.write_text(EVAL_BRIEFS, encoding="utf-8")
    topics, target_words = read_eval_topics(path)
    assert topics[0] == EvalTopic("bread", "Keeping bread fresh") and len(topics) == 3 and target_words == 60
    path.write_text("briefs:\n  - {id: a, title: A}\n  - {id: a, title: B}\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match="duplicate brief id"):
        read_eval_topics(path)
    path.write_text("briefs: [{title: no id}]\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match="not a list of evaluation briefs"):
        read_eval_topics(path)

    corpus_briefs = [
        Brief(title="a", content_type="how-to", audience="beginners", tone="friendly"),
        Brief(title="b", content_type="how-to", audience="homeowners", tone="friendly"),
        Brief(title="c", content_type="listicle", audience="beginners", tone="plain"),
    ]
    house = house_metadata(corpus_briefs)
    assert house == {"content_type": ContentType.HOW_TO, "audience": "beginners", "tone": "friendly"}
    first, second = (eval_briefs(topics, name, house, 60) for name in ("calm", "stiff"))
    assert [b.title for b in first] == [b.title for b in second]  # the same topics for every style
    assert first[0].brief_id == second[0].brief_id == "eval-bread"  # and the same seeds
    assert first[0].style == "calm" and first[0].content_type == ContentType.HOW_TO and first[0].target_words == 60


def test_the_default_version_is_the_one_served_on_the_base_model_else_its_newest(tmp_path: Path) -> None:
    path = two_base_style(tmp_path)  # v1 served on base-a, v2 on base-b, v3 on base-a
    assert (default_version(load_style(path, BASE_A)), default_version(load_style(path, BASE_B))) == ("v1", "v2")
    path.write_text(path.read_text().replace("adapter: {base-a: v1, base-b: v2}", "adapter: {base-b: v2}"))
    write_version(path.parent, "v4", BASE_B)
    assert default_version(load_style(path, BASE_A)) == "v3"  # base-a's newest, not base-b's v4
    assert default_version(load_style(path, "base-c")) == "v4"  # nothing on it: the newest (its check refuses it)


def test_a_style_without_a_corpus_folder_is_evaluated_on_the_archive_its_version_trained_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = two_base_style(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    meta_file = path.parent / "adapters" / "v1" / "copydesk-adapter.json"
    meta = json.loads(meta_file.read_text())
    style = load_style(path, BASE_A)
    assert corpus_folder(style, "v1") is None  # no corpus/ folder, no recorded source
    meta_file.write_text(json.dumps({**meta, "corpus": {"source": str(archive), "sha256": "ab" * 32}}))
    assert corpus_folder(style, "v1") == CorpusSource(archive, f"v1's training corpus {archive}", "ab" * 32)
    assert corpus_folder(style, "v3") is None  # another version records nothing
    monkeypatch.setattr(eval_inputs, "PROJECT_ROOT", tmp_path)  # a source inside the project is recorded relative
    meta_file.write_text(json.dumps({**meta, "corpus": {"source": "archive"}}))
    assert corpus_folder(style, "v1") == CorpusSource(archive, f"v1's training corpus {archive}")
    for broken in ("{not json", '["a list"]', '{"corpus": "archive"}', '{"corpus": {"source": 3}}'):
        meta_file.write_text(broken)
        assert corpus_folder(style, "v1") is None  # an unreadable record is no corpus, not a crash
    meta_file.write_text(json.dumps({**meta, "corpus": {"source": str(archive)}}))
    archive.rmdir()
    assert corpus_folder(style, "v1") is None  # a recorded folder that is gone is not a corpus
    (path.parent / "corpus").mkdir()
    assert corpus_folder(style, "v1") == CorpusSource(path.parent / "corpus", "corpus/ folder")  # its own wins


def test_a_recorded_archive_that_changed_since_training_is_said_in_the_report(tmp_path: Path) -> None:
    path = two_base_style(tmp_path)
    archive = Path(__file__).resolve().parent.parent / "data" / "archives" / "hugo-damage"
    meta_file = path.parent / "adapters" / "v1" / "copydesk-adapter.json"
    meta = json.loads(meta_file.read_text())
    style = load_style(path, BASE_A)
    actual = load_corpus(archive).content_hash()
    count = len(load_corpus(archive).articles)
    for recorded, articles, note in (
        (actual, count, None),
        ("0" * 64, count, "changed since it was trained"),
        ("0" * 64, count - 1, f"trained on {count - 1} of its {count} articles"),  # --max-articles: not compared
    ):
        record = {"source": str(archive), "sha256": recorded, "articles": articles}
        meta_file.write_text(json.dumps({**meta, "corpus": record}))
        found = voice_corpus(style, "en", "v1")
        assert found is not None and len(found.ids) == count
        assert found.source.count("(") == (0 if note is None else 1) and (note is None or note in found.source)


HELD_OUT = {"id": "a", "brief": {"id": "a", "title": "Keeping bread fresh"}, "article": "Bread keeps."}


def test_a_malformed_adapter_record_falls_back_to_the_heldout_file_rather_than_crashing(tmp_path: Path) -> None:
    (tmp_path / ADAPTER_META).write_text('{"heldout_ids": ["a", ', encoding="utf-8")
    assert eval_inputs.heldout_ids(tmp_path) == set()  # no held-out file either: nothing recorded
    (tmp_path / "heldout.jsonl").write_text(json.dumps(HELD_OUT) + "\n", encoding="utf-8")
    assert eval_inputs.heldout_ids(tmp_path) == {"a"}
    (tmp_path / ADAPTER_META).write_text('{"heldout_ids": ["a", "b"]}', encoding="utf-8")
    assert eval_inputs.heldout_ids(tmp_path) == {"a", "b"}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", r"line 2: not JSON"),
        ("[1, 2]", r"line 2: not a JSON object"),
        (json.dumps({**HELD_OUT, "article": None}), r"line 2: field 'article' is missing or not a string"),
        (json.dumps({"brief": HELD_OUT["brief"], "article": "x"}), r"line 2: field 'id' is missing"),
        (json.dumps({**HELD_OUT, "brief": {"id": "a"}}), r"line 2: field 'brief': title: Field required"),
    ],
)
def test_a_malformed_heldout_line_is_an_error_naming_the_file_line_and_field(
    tmp_path: Path, bad_line: str, message: str
) -> None:
    path = tmp_path / "heldout.jsonl"
    path.write_text(json.dumps(HELD_OUT) + "\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"heldout\.jsonl " + message):
        eval_inputs.read_heldout(tmp_path)


def test_a_wellformed_heldout_file_reads_every_line_and_skips_blank_ones(tmp_path: Path) -> None:
    other = {**HELD_OUT, "id": "b"}
    (tmp_path / "heldout.jsonl").write_text(json.dumps(HELD_OUT) + "\n\n" + json.dumps(other) + "\n")
    assert [item.id for item in eval_inputs.read_heldout(tmp_path)] == ["a", "b"]
