"""The engine, training and evaluation on every device this machine has (issue 17, item 6).

Each test runs once per device: ``cpu`` everywhere, and ``cuda`` (marked ``cuda``) where torch sees a CUDA
device — skipped elsewhere, which includes every machine this project has been tested on so far
(docs/models.md). The CPU runs repeat checks that tests/engine and tests/lab make on every family; they are here
so that the test bodies are proven on CPU and the CUDA runs differ from them only in the device (and, for
training, in the precision: the trainer uses bf16 autocast on a GPU that has it). On the tiny random llama
(``tests/tiny_model.py``), the engine in fp32:

* the engine puts the model on the device and decodes greedily what transformers' ``generate`` decodes there
  (the engine's rows in a padded batch against ``generate``'s single row: exact on CPU; on CUDA it also relies on
  no near-tied argmax in 36 greedy steps of a tiny random model);
* its stacked LoRA forward for a batch mixing two adapters and the base model gives PEFT's logits (within 1e-4);
* ``styles train``'s training function trains on the device (its ``training.json`` says so) and writes an
  adapter that the engine loads and serves there;
* held-out perplexity (``styles eval``'s measure) runs on the device and is lower with the trained adapter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from corpus_fixtures import write_style, write_voice
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, adapter_b_dir, one_torch_thread, tiny_model_dir

from worker.config import Settings
from worker.engine.adapters import BASE, AdapterRef, check_adapter
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine, GenerationRequest
from worker.engine.sampling import RowSettings
from worker.lab.eval_inputs import read_heldout
from worker.lab.eval_measures import perplexity
from worker.lab.options import TrainingOptions
from worker.lab.training import train_style
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import StyleCatalog
from worker.styles.layout import TRAINING_FILE

__all__ = ["adapter_a_dir", "adapter_b_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
        ],
    ),
]
TOPICS = ["Compost", "How to fix a dripping kitchen tap", "Lisbon", "Why B-tree indexes make range queries fast"]
FAST = {"max_length": 320, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "min_words": 30, "eval_fraction": 0.25}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def engine_on(device: str, model_dir: Path, batch_size: int = 4) -> Engine:
    source = BaseModelSource(TINY_MODEL_ID, model_dir, weights_hash(model_dir))
    return Engine(source, device=device, dtype=torch.float32, batch_size=batch_size)


def greedy(key: str, topic: str, adapter: AdapterRef | None = None, max_new_tokens: int = 10) -> GenerationRequest:
    messages = [{"role": "system", "content": "You write short articles."}, {"role": "user", "content": topic}]
    row = RowSettings(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=max_new_tokens, seed=0)
    return GenerationRequest(key, messages, row, adapter)


def test_the_engine_decodes_on_the_device_what_generate_decodes_there(device: str, tiny_model_dir: Path) -> None:
    engine = engine_on(device, tiny_model_dir, batch_size=3)
    assert {parameter.device.type for parameter in engine.model.parameters()} == {device}
    requests = [greedy(f"g{i}", topic) for i, topic in enumerate(TOPICS)]
    outputs = engine.generate(requests)
    assert [output.key for output in outputs] == [request.key for request in requests]
    tokenizer = engine.tokenizer
    for request, output in zip(requests, outputs, strict=True):
        prompt = engine.chat_prompt(request.messages)
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            reference = engine.model.generate(
                **encoded, do_sample=False, max_new_tokens=9, pad_token_id=tokenizer.pad_token_id
            )
        new = reference[0, encoded["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        assert output.text == tokenizer.decode(new, skip_special_tokens=True), request.key


def test_mixed_adapter_logits_on_the_device_equal_pefts(
    device: str, tiny_model_dir: Path, adapter_a_dir: Path, adapter_b_dir: Path
) -> None:
    from worker.engine.lora_batch import grouped_lora

    engine = engine_on(device, tiny_model_dir)
    refs = AdapterRef("style-a", "v1", adapter_a_dir), AdapterRef("style-b", "v2", adapter_b_dir)
    for ref in refs:
        engine.load_adapter(ref)
    names = [refs[0].name, BASE, refs[1].name, refs[0].name]
    prompts = [engine.chat_prompt([{"role": "user", "content": topic}]) for topic in TOPICS]
    encoded = engine.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    with torch.inference_mode():
        peft_logits = engine.model(**encoded, adapter_names=names).logits
        with grouped_lora(engine.model, names) as grouped:
            assert grouped is not None
            grouped_logits = engine.model(**encoded).logits
        base_logits = engine.model(**encoded, adapter_names=[BASE] * len(names)).logits
    real = encoded["attention_mask"].bool()
    assert grouped_logits.device.type == device
    assert torch.allclose(grouped_logits[real], peft_logits[real], atol=1e-4)
    for row, name in enumerate(names):  # the adapters change the logits, so the comparison above could fail
        changed = not torch.allclose(peft_logits[row][real[row]], base_logits[row][real[row]], atol=1e-4)
        assert changed == (name != BASE), name


def test_training_on_the_device_writes_an_adapter_the_engine_serves_there(
    device: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        styles_dir=tmp_path / "styles",
        model=str(tiny_model_dir),
        device=device,
        dtype="float32",
    )
    write_style(settings.styles_dir, "calm")
    corpus = write_voice(tmp_path / "corpus", "plain", 8)
    result = train_style(
        settings, "calm", corpus_dir=corpus, options=TrainingOptions(epochs=1, learning_rate=5e-3, **FAST)
    )
    assert result.metrics["best_eval_loss"] < result.metrics["base_eval_loss"]
    assert json.loads((result.directory / TRAINING_FILE).read_text())["device"] == device
    ref = AdapterRef("calm", result.version, result.directory)
    check_adapter(ref, TINY_MODEL_ID, weights_hash(tiny_model_dir))
    engine = engine_on(device, tiny_model_dir, batch_size=2)
    engine.load_adapter(ref)
    adapted, base = engine.generate([greedy("adapted", "Tea", ref, 16), greedy("base", "Tea", None, 16)])
    assert adapted.new_tokens > 0 and adapted.prompt_tokens == base.prompt_tokens > 0
    style = StyleCatalog.load(settings.styles_dir).get("calm")
    renderer = PromptRenderer(settings.templates_dir)
    items = read_heldout(result.directory)
    with_adapter = perplexity(engine, renderer, style, items, ref.name, max_length=FAST["max_length"])
    without = perplexity(engine, renderer, style, items, BASE, max_length=FAST["max_length"])
    assert math.isfinite(with_adapter) and with_adapter < without
