"""``COPYDESK_MODEL=gemma3-270m``: Gemma 3 270M from the optional extra ``.[gemma]`` (:mod:`worker.engine.base_model`).

Without the extra, the model is refused with the install command. The supplied chat template renders Gemma's turns.
With the extra installed, the real model is converted once into the model cache (about a minute on the busy 2-core
test machine; later runs load the converted copy), loaded by the engine and writes a few texts: those tests are marked
``real_model`` and skipped when the extra is not installed (``scripts/setup.sh``, and so CI, does not install it).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from model_fixtures import one_torch_thread, tiny_model_dir
from transformers import AutoTokenizer

import worker.engine.base_model as base_model
from worker.config import Settings
from worker.engine.base_model import (
    GEMMA_CHAT_TEMPLATE,
    GEMMA_END_OF_TURN,
    GEMMA_MODEL,
    GEMMA_PACKAGE,
    ID_FILE,
    resolve_base_model,
)
from worker.errors import ModelError

__all__ = ["one_torch_thread", "tiny_model_dir"]  # fixtures used by name

MESSAGES = [
    {"role": "system", "content": "You write short, plain articles."},
    {"role": "user", "content": "Write a how-to titled: How to keep bread fresh"},
]
GEMMA_INSTALLED = importlib.util.find_spec(GEMMA_PACKAGE) is not None
needs_gemma = pytest.mark.skipif(not GEMMA_INSTALLED, reason="the optional extra .[gemma] is not installed")


def test_without_the_extra_gemma_is_refused_naming_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == GEMMA_PACKAGE else real_find_spec(name, *args)

    monkeypatch.setattr(base_model.importlib.util, "find_spec", find_spec)
    settings = Settings(model=GEMMA_MODEL, model_cache_dir=tmp_path / "cache", home=tmp_path / "home")
    with pytest.raises(ModelError, match=r"COPYDESK_MODEL=gemma3-270m needs .* run `pip install -e '\.\[gemma\]'`"):
        resolve_base_model(settings)
    assert not (tmp_path / "cache").exists()  # nothing half-made


def test_an_unknown_model_name_lists_gemma_among_the_choices(tmp_path: Path) -> None:
    settings = Settings(model="gemma3-1b", model_cache_dir=tmp_path / "cache", home=tmp_path / "home")
    with pytest.raises(ModelError, match=r"is neither 'smollm2-135m-instruct', nor 'gemma3-270m', nor a local"):
        resolve_base_model(settings)


def test_the_supplied_chat_template_writes_gemma_turns(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.bos_token = "<|endoftext|>"  # (the tiny tokenizer's; Gemma's is <bos>)

    def render(messages: list[dict[str, str]], prompt: bool) -> str:
        return str(
            tokenizer.apply_chat_template(
                messages, chat_template=GEMMA_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=prompt
            )
        )

    prompt = render(MESSAGES, True)
    assert prompt == (
        "<|endoftext|><start_of_turn>user\nYou write short, plain articles.\n\n"
        "Write a how-to titled: How to keep bread fresh<end_of_turn>\n<start_of_turn>model\n"
    )
    full = render([*MESSAGES, {"role": "assistant", "content": "# Bread\n\nWrap it.\n"}], False)
    assert full == prompt + "# Bread\n\nWrap it.<end_of_turn>\n"  # the prompt is a prefix: training's loss mask holds
    assert render(MESSAGES[1:], True).startswith("<|endoftext|><start_of_turn>user\nWrite a how-to")  # no system
    with pytest.raises(Exception, match="alternate"):
        render([MESSAGES[1], MESSAGES[1]], True)


# ------------------------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def gemma_dir() -> Path:
    """Gemma 3 270M converted into the default model cache (shared with the other real-model tests; once)."""
    return resolve_base_model(Settings(model=GEMMA_MODEL)).directory


@pytest.mark.real_model
@needs_gemma
def test_gemma_converts_once_with_gemma_turns_and_its_own_vocabulary(gemma_dir: Path) -> None:
    package = importlib.import_module(GEMMA_PACKAGE)
    assert gemma_dir.name.startswith(f"{GEMMA_MODEL}-{package.EXPECTED_SHA256[:12]}-chat-")
    assert (gemma_dir / ID_FILE).read_text().strip() == GEMMA_MODEL
    assert not list(gemma_dir.parent.glob(".gguf-*"))  # the assembled GGUF was a scratch file, deleted
    config = json.loads((gemma_dir / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["vocab_size"] == 262144
    assert "sliding_attention" in config["layer_types"] and "full_attention" in config["layer_types"]
    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    assert tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    assert tokenizer.eos_token == GEMMA_END_OF_TURN
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode(GEMMA_END_OF_TURN, add_special_tokens=False)) == [
        GEMMA_END_OF_TURN
    ]  # one token of Gemma's vocabulary, not characters
    again = resolve_base_model(Settings(model=GEMMA_MODEL))
    assert again.directory == gemma_dir and again.model_id == GEMMA_MODEL and len(again.weights_hash) == 64


@pytest.mark.real_model
@needs_gemma
@pytest.mark.usefixtures("one_torch_thread")
def test_the_engine_serves_gemma_and_writes_english(gemma_dir: Path) -> None:
    from worker.engine.engine import Engine, GenerationRequest
    from worker.engine.sampling import RowSettings

    engine = Engine(resolve_base_model(Settings(model=GEMMA_MODEL)), device="cpu", dtype=torch.float32, batch_size=3)
    assert engine.chat_prompt(MESSAGES).startswith("<bos><start_of_turn>user\nYou write short")
    titles = ["How to keep bread fresh", "How to water houseplants", "How to clean a cast iron pan"]
    requests = [
        GenerationRequest(
            f"draft-{i}",
            [MESSAGES[0], {"role": "user", "content": f"Write a how-to titled: {title}"}],
            RowSettings(temperature=0.7, top_p=0.9, repetition_penalty=1.1, max_new_tokens=32, seed=i),
        )
        for i, title in enumerate(titles)
    ]
    outputs = engine.generate(requests)
    for output in outputs:
        assert output.new_tokens > 0 and output.prompt_tokens > 20
        letters = re.findall(r"[^\W\d_]", output.text)
        assert len(letters) >= 20, output.text
        assert sum(ch.isascii() for ch in letters) / len(letters) > 0.9, output.text  # English, not noise
    assert len({output.text for output in outputs}) == 3
