"""Tests of :mod:`worker.lab.examples`: the held-out split (the records are tested on a real trainer in
test_training.py)."""

from __future__ import annotations

import pytest

from worker.errors import TrainingError
from worker.intake.briefs import Brief
from worker.lab.examples import Example, split_examples


def test_split_is_stable_and_feedback_always_trains() -> None:
    examples = [Example(f"a{i}", "corpus", Brief(title=f"T{i}"), "x") for i in range(10)]
    feedback = [Example("f", "feedback", Brief(title="F"), "y")]
    train, heldout = split_examples(examples + feedback, 0.2, seed=0)
    assert len(heldout) == 2 and feedback[0] in train
    ids = {e.id for e in heldout}
    assert {e.id for e in split_examples(list(reversed(examples)) + feedback, 0.2, seed=0)[1]} == ids  # any order
    assert {e.id for e in split_examples(examples, 0.2, seed=1)[1]} != ids
    with pytest.raises(TrainingError, match="at least two"):
        split_examples(examples[:1], 0.5, seed=0)
