"""Tests of :mod:`worker.lab.options` and the CLI options generated from it (:mod:`worker.cli.model_options`):
every option is reachable from the command line with the model's own default and help text, the older flags
still work, and a refused value names the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from worker.cli.common import handle_errors
from worker.cli.main import app
from worker.cli.model_options import flag, options_from
from worker.errors import EvaluationError, TrainingError
from worker.lab.options import EvalOptions, TrainingOptions

runner = CliRunner()


def capture_app(model: type[Any], error: type[Any], aliases: dict[str, tuple[str, ...]]) -> tuple[typer.Typer, list]:
    """A one-command app whose command records the options model it was called with."""
    seen: list[Any] = []
    probe = typer.Typer()

    @probe.command()
    @handle_errors
    @options_from(model, into="options", error=error, what="test", aliases=aliases)
    def command(name: str, options: Any = None, loud: bool = False) -> None:
        seen.append((name, options, loud))

    return probe, seen


@pytest.mark.parametrize(("command", "model"), [("train", TrainingOptions), ("eval", EvalOptions)])
def test_every_field_is_an_option_with_its_help(command: str, model: type[Any]) -> None:
    result = runner.invoke(app, ["styles", command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for name, info in model.model_fields.items():
        assert flag(name) in result.output, name
        assert info.description and info.description in result.output, name


def test_defaults_come_from_the_model() -> None:
    probe, seen = capture_app(TrainingOptions, TrainingError, {})
    result = runner.invoke(probe, ["calm"])
    assert result.exit_code == 0, result.output
    assert seen == [("calm", TrainingOptions(), False)]


def test_every_training_option_reaches_the_model_and_the_old_flags_still_work() -> None:
    probe, seen = capture_app(TrainingOptions, TrainingError, {"learning_rate": ("--lr",), "lora_r": ("--rank",)})
    args = ["calm", "--lr", "0.01", "--rank", "4", "--lora-alpha", "8", "--lora-dropout", "0.1"]
    args += ["--target-modules", "q_proj, k_proj,", "--gradient-accumulation", "3", "--warmup-ratio", "0.1"]
    args += ["--weight-decay", "0.01", "--keep-checkpoints", "--early-stopping-patience", "2", "--loud"]
    result = runner.invoke(probe, args)
    assert result.exit_code == 0, result.output
    ((name, options, loud),) = seen
    assert (name, loud) == ("calm", True)
    assert options == TrainingOptions(
        learning_rate=0.01,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        target_modules=["q_proj", "k_proj"],
        gradient_accumulation=3,
        warmup_ratio=0.1,
        weight_decay=0.01,
        keep_checkpoints=True,
        early_stopping_patience=2,
    )


def test_evaluation_paths_reach_the_model(tmp_path: Path) -> None:
    probe, seen = capture_app(EvalOptions, EvaluationError, {"output_dir": ("--output",)})
    result = runner.invoke(probe, ["calm", "--output", str(tmp_path), "--briefs-file", str(tmp_path / "b.yaml")])
    assert result.exit_code == 0, result.output
    assert seen[0][1] == EvalOptions(output_dir=tmp_path, briefs_file=tmp_path / "b.yaml")


def test_a_refused_value_is_the_commands_error_naming_the_option() -> None:
    probe, seen = capture_app(TrainingOptions, TrainingError, {})
    result = runner.invoke(probe, ["calm", "--lora-dropout", "1.5"])
    assert result.exit_code == TrainingError.exit_code
    assert "test option lora_dropout" in result.output
    assert seen == []


def test_target_modules_are_module_names_or_all_linear() -> None:
    assert TrainingOptions().peft_target_modules() == ["q_proj", "v_proj"]
    assert TrainingOptions(target_modules=["all-linear"]).peft_target_modules() == "all-linear"  # PEFT's keyword
    dotted = ["model.layers.0.mlp.up_proj"]
    assert TrainingOptions(target_modules=dotted).peft_target_modules() == dotted
    for bad in ([], ["../x"], ["q_proj", "all-linear"], ["q proj"]):
        with pytest.raises(ValidationError):
            TrainingOptions(target_modules=bad)
