"""Unit tests of :mod:`worker.engine.adapters`: checks before loading, and the LRU adapter registry."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, adapter_b_dir, copy_dir, one_torch_thread, tiny_model_dir
from safetensors.torch import save_file

from worker.engine.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_META,
    ADAPTER_WEIGHTS,
    AdapterRef,
    AdapterRegistry,
    adapter_sha256,
    check_adapter,
)
from worker.engine.base_model import weights_hash
from worker.errors import AdapterError, ModelError

__all__ = ["adapter_a_dir", "adapter_b_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def adapter(tmp_path: Path, adapter_a_dir: Path) -> Path:
    """A private copy of a real adapter that a test may break."""
    return copy_dir(adapter_a_dir, tmp_path / "adapters" / "v1")


def ref(directory: Path, style: str = "calm", version: str = "v1") -> AdapterRef:
    return AdapterRef(style, version, directory)


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def load_tiny_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


# ----------------------------------------------------------------------------------------- check_adapter


def test_valid_adapter_passes(adapter: Path) -> None:
    config = check_adapter(ref(adapter), TINY_MODEL_ID)
    assert config["peft_type"] == "LORA"
    assert config["target_modules"]


def test_adapter_ref_name_has_no_dots_or_dashes_and_never_collides(tmp_path: Path) -> None:
    assert ref(tmp_path, "calm", "v12").name == "calm__v12"  # already a PEFT name: kept as it is
    names = {ref(tmp_path, style, "v1").name for style in ("a.b", "a_b", "a-b", "a__b", "a.b.c", "a_b.c")}
    assert len(names) == 6  # each style its own adapter slot
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_]+", name), name
    hyphenated = ref(tmp_path, "plain-howto", "v12").name
    assert hyphenated.startswith("plain_howto__v12_") and hyphenated == ref(tmp_path, "plain-howto", "v12").name


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="does not exist"):
        check_adapter(ref(tmp_path / "nope"), TINY_MODEL_ID)


def test_adapter_error_is_a_model_error() -> None:
    assert issubclass(AdapterError, ModelError)


@pytest.mark.parametrize("pickle_name", ["adapter_model.bin", "optimizer.pt", "extra.pkl", "training.ckpt"])
def test_pickle_files_are_refused(adapter: Path, pickle_name: str) -> None:
    (adapter / pickle_name).write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(AdapterError) as exc:
        check_adapter(ref(adapter), TINY_MODEL_ID)
    assert pickle_name in str(exc.value)
    assert "safetensors only" in str(exc.value)


def test_missing_weights_are_refused(adapter: Path) -> None:
    (adapter / ADAPTER_WEIGHTS).unlink()
    with pytest.raises(AdapterError, match=f"has no {ADAPTER_WEIGHTS}"):
        check_adapter(ref(adapter), TINY_MODEL_ID)


def test_corrupt_weights_are_refused(adapter: Path) -> None:
    (adapter / ADAPTER_WEIGHTS).write_bytes(os.urandom(4096))
    with pytest.raises(AdapterError) as exc:
        check_adapter(ref(adapter), TINY_MODEL_ID)
    assert "corrupt or unreadable" in str(exc.value)
    assert "calm v1" in str(exc.value)


def test_truncated_weights_are_refused(adapter: Path) -> None:
    weights = adapter / ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:64])
    with pytest.raises(AdapterError, match="corrupt or unreadable"):
        check_adapter(ref(adapter), TINY_MODEL_ID)


def test_weights_without_tensors_are_refused(adapter: Path) -> None:
    save_file({}, str(adapter / ADAPTER_WEIGHTS))
    with pytest.raises(AdapterError, match="holds no tensors"):
        check_adapter(ref(adapter), TINY_MODEL_ID)


def test_missing_config_is_refused(adapter: Path) -> None:
    (adapter / ADAPTER_CONFIG).unlink()
    with pytest.raises(AdapterError, match=f"has no {ADAPTER_CONFIG}"):
        check_adapter(ref(adapter), TINY_MODEL_ID)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff"])
def test_malformed_config_is_refused(adapter: Path, text: str) -> None:
    (adapter / ADAPTER_CONFIG).write_text(text, encoding="latin-1")
    with pytest.raises(AdapterError, match=ADAPTER_CONFIG):
        check_adapter(ref(adapter), TINY_MODEL_ID)


@pytest.mark.parametrize("peft_type", ["IA3", "PREFIX_TUNING", None])
def test_non_lora_adapter_is_refused(adapter: Path, peft_type: str | None) -> None:
    edit_json(adapter / ADAPTER_CONFIG, peft_type=peft_type)
    with pytest.raises(AdapterError, match="expected 'LORA'"):
        check_adapter(ref(adapter), TINY_MODEL_ID)


@pytest.mark.parametrize(
    ("field", "value"), [("modules_to_save", ["lm_head"]), ("trainable_token_indices", {"embed_tokens": [1, 2]})]
)
def test_an_adapter_with_modules_or_tokens_of_its_own_is_refused_naming_the_field(
    adapter: Path, field: str, value: object
) -> None:
    edit_json(adapter / ADAPTER_CONFIG, **{field: value})
    with pytest.raises(AdapterError, match=f"field '{field}'"):
        check_adapter(ref(adapter), TINY_MODEL_ID)
    edit_json(adapter / ADAPTER_CONFIG, **{field: None})
    assert check_adapter(ref(adapter), TINY_MODEL_ID)["peft_type"] == "LORA"


def test_adapter_for_another_base_model_is_refused(adapter: Path) -> None:
    (adapter / ADAPTER_META).write_text(json.dumps({"base_model_id": "llama-3-8b"}))
    with pytest.raises(AdapterError) as exc:
        check_adapter(ref(adapter), TINY_MODEL_ID)
    assert "'llama-3-8b'" in str(exc.value)
    assert repr(TINY_MODEL_ID) in str(exc.value)


def test_training_metadata_wins_over_peft_base_model_path(adapter: Path) -> None:
    # PEFT records the training directory; copydesk's own metadata names the model id.
    edit_json(adapter / ADAPTER_CONFIG, base_model_name_or_path="/somewhere/else")
    assert check_adapter(ref(adapter), TINY_MODEL_ID)["peft_type"] == "LORA"


def test_peft_base_model_path_is_used_without_metadata(adapter: Path) -> None:
    (adapter / ADAPTER_META).unlink()
    edit_json(adapter / ADAPTER_CONFIG, base_model_name_or_path="other-model")
    with pytest.raises(AdapterError, match="'other-model'"):
        check_adapter(ref(adapter), TINY_MODEL_ID)
    edit_json(adapter / ADAPTER_CONFIG, base_model_name_or_path=TINY_MODEL_ID)
    check_adapter(ref(adapter), TINY_MODEL_ID)


def test_malformed_metadata_is_refused(adapter: Path) -> None:
    (adapter / ADAPTER_META).write_text("[]")
    with pytest.raises(AdapterError, match=ADAPTER_META):
        check_adapter(ref(adapter), TINY_MODEL_ID)


# ------------------------------------------------------------------------------------ lineage by weights


@pytest.fixture
def other_weights_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The tiny model under its own name with one weight changed: a same-named model with other weights."""
    from safetensors.torch import load_file

    directory = copy_dir(tiny_model_dir, tmp_path / "same-name-other-weights")
    weights = directory / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(key for key in sorted(tensors) if key.endswith("v_proj.weight"))
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert (directory / "copydesk-model-id").read_text().strip() == TINY_MODEL_ID
    return directory


def test_a_same_named_model_with_other_weights_is_refused_naming_both_hashes(
    adapter: Path, tiny_model_dir: Path, other_weights_dir: Path
) -> None:
    trained_on, loaded = weights_hash(tiny_model_dir), weights_hash(other_weights_dir)
    assert trained_on != loaded
    edit_json(adapter / ADAPTER_META, base_model_weights_sha256=trained_on)
    assert check_adapter(ref(adapter), TINY_MODEL_ID, trained_on)["peft_type"] == "LORA"
    with pytest.raises(AdapterError) as exc:
        check_adapter(ref(adapter), TINY_MODEL_ID, loaded)
    assert trained_on in str(exc.value) and loaded in str(exc.value)
    assert "other weights under the same name" in str(exc.value)
    # The engine refuses it at load, from the weights it loaded.
    from worker.engine.base_model import BaseModelSource
    from worker.engine.engine import Engine

    engine = Engine(BaseModelSource(TINY_MODEL_ID, other_weights_dir, loaded), device="cpu", batch_size=2)
    with pytest.raises(AdapterError, match=loaded):
        engine.load_adapter(ref(adapter))
    assert not engine.adapters.loaded


def test_the_same_weights_under_another_name_are_refused_by_name_with_a_hint(
    adapter: Path, tiny_model_dir: Path
) -> None:
    digest = weights_hash(tiny_model_dir)
    edit_json(adapter / ADAPTER_META, base_model_id="renamed-copy", base_model_weights_sha256=digest)
    with pytest.raises(AdapterError, match=r"'renamed-copy'.*the weights are the same"):
        check_adapter(ref(adapter), TINY_MODEL_ID, digest)
    with pytest.raises(AdapterError, match="'renamed-copy'") as exc:  # without the loaded model's hash: no hint
        check_adapter(ref(adapter), TINY_MODEL_ID)
    assert "the weights are the same" not in str(exc.value)


def test_an_adapter_without_a_recorded_hash_is_checked_by_name(adapter: Path) -> None:
    assert "base_model_weights_sha256" not in json.loads((adapter / ADAPTER_META).read_text())
    assert check_adapter(ref(adapter), TINY_MODEL_ID, "0" * 64)["peft_type"] == "LORA"
    edit_json(adapter / ADAPTER_META, base_model_id="llama-3-8b")
    with pytest.raises(AdapterError, match="llama-3-8b"):
        check_adapter(ref(adapter), TINY_MODEL_ID, "0" * 64)


def test_adapter_sha256_covers_config_and_weights(adapter: Path, adapter_b_dir: Path) -> None:
    before = adapter_sha256(adapter)
    assert len(before) == 64 and before == adapter_sha256(adapter)
    (adapter / ADAPTER_META).write_text("{}")  # copydesk's own metadata is not part of the adapter's bytes
    assert adapter_sha256(adapter) == before
    edit_json(adapter / ADAPTER_CONFIG, lora_dropout=0.5)
    changed_config = adapter_sha256(adapter)
    assert changed_config != before
    (adapter / ADAPTER_WEIGHTS).write_bytes((adapter_b_dir / ADAPTER_WEIGHTS).read_bytes())
    assert adapter_sha256(adapter) not in (before, changed_config)


# ------------------------------------------------------------------------------------------------ registry


def test_registry_loads_once_and_remembers_refusals(
    tmp_path: Path, tiny_model_dir: Path, adapter_a_dir: Path, adapter_b_dir: Path
) -> None:
    registry = AdapterRegistry(TINY_MODEL_ID, capacity=4)
    assert registry.sha256(ref(adapter_a_dir, "alpha")) is None
    model = registry.ensure(load_tiny_model(tiny_model_dir), ref(adapter_a_dir, "alpha"))
    assert type(model).__name__ == "PeftModel"
    assert list(registry.loaded) == ["alpha__v1"]
    assert registry.sha256(ref(adapter_a_dir, "alpha")) == adapter_sha256(adapter_a_dir)  # computed once, at load
    assert registry.ensure(model, ref(adapter_a_dir, "alpha")) is model  # already loaded: a no-op

    broken = copy_dir(adapter_b_dir, tmp_path / "broken")
    (broken / ADAPTER_WEIGHTS).write_bytes(os.urandom(1024))
    with pytest.raises(AdapterError, match="corrupt") as first:
        registry.ensure(model, ref(broken, "beta"))
    assert registry.refused == {"beta__v1": str(first.value)}
    # Fixing the files does not make the registry retry: the refusal is remembered for this process.
    (broken / ADAPTER_WEIGHTS).write_bytes((adapter_b_dir / ADAPTER_WEIGHTS).read_bytes())
    with pytest.raises(AdapterError) as second:
        registry.ensure(model, ref(broken, "beta"))
    assert str(second.value) == str(first.value)
    assert list(registry.loaded) == ["alpha__v1"]
    assert set(model.peft_config) == {"alpha__v1"}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"target_modules": ["no_such_proj"]}, id="unknown-target-module"),
        pytest.param({"r": 8}, id="rank-does-not-match-weights"),
    ],
)
def test_registry_refuses_an_adapter_that_does_not_fit_the_model(
    adapter: Path, tiny_model_dir: Path, changes: dict[str, Any]
) -> None:
    edit_json(adapter / ADAPTER_CONFIG, **changes)
    check_adapter(ref(adapter), TINY_MODEL_ID)  # the files themselves look fine
    registry = AdapterRegistry(TINY_MODEL_ID)
    with pytest.raises(AdapterError, match="calm v1 failed to load"):
        registry.ensure(load_tiny_model(tiny_model_dir), ref(adapter))
    assert "calm__v1" in registry.refused
    assert not registry.loaded


def test_registry_evicts_the_least_recently_used(
    tmp_path: Path, tiny_model_dir: Path, adapter_a_dir: Path, adapter_b_dir: Path
) -> None:
    registry = AdapterRegistry(TINY_MODEL_ID, capacity=2)
    first, second, third = ref(adapter_a_dir, "first"), ref(adapter_b_dir, "second"), ref(adapter_a_dir, "third")
    model = registry.ensure(load_tiny_model(tiny_model_dir), first)
    model = registry.ensure(model, second)
    model = registry.ensure(model, first)  # touch: second is now the least recently used
    model = registry.ensure(model, third)
    assert list(registry.loaded) == ["first__v1", "third__v1"]
    assert set(model.peft_config) == {"first__v1", "third__v1"}
    model = registry.ensure(model, second)  # loads again, evicting first
    assert list(registry.loaded) == ["third__v1", "second__v1"]
    assert set(model.peft_config) == {"third__v1", "second__v1"}
    assert registry.refused == {}
