"""Style adapters: PEFT LoRA directories, checked before they load, kept in a small LRU registry.

An adapter directory must hold ``adapter_config.json`` and ``adapter_model.safetensors`` (the standard PEFT
layout, loadable by vLLM and LoRAX too). Pickle formats (``.bin``, ``.pt``, ``.pkl``) are refused outright.
An adapter records the base model it was trained for (``copydesk-adapter.json`` written by training, or
``base_model_name_or_path``); one trained for another base model is refused with a clear error. Lineage is
by weights too: when the adapter records the SHA-256 of its base model's weights (``base_model_weights_sha256``)
and the loaded model's is known, the two must be equal (a same-named model with other weights is refused,
naming both hashes); the base model's name must match as well.

Each loaded adapter's own SHA-256 (:func:`adapter_sha256`, over its config and weights) is computed once at
load and kept in the registry, so that an article's provenance names the exact adapter bytes it came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from worker.engine.base_model import ID_FILE
from worker.errors import AdapterError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_META = "copydesk-adapter.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
BASE = "__base__"


@dataclass(frozen=True)
class AdapterRef:
    """One adapter version of one style."""

    style: str
    version: str
    directory: Path

    @property
    def name(self) -> str:
        """Name under which the adapter is registered in the PEFT model (letters, digits and ``_`` only).

        Style and version names may also hold ``.`` and ``-``; replacing them alone would give ``a.b`` and
        ``a_b`` one name, and one style the other's adapter. Such names get a short hash of the exact
        style and version, so two different adapters never share a name.
        """
        plain = f"{self.style}__{self.version}"
        readable = re.sub(r"[^A-Za-z0-9_]", "_", plain)
        if readable == plain:
            return plain
        digest = hashlib.sha256(f"{self.style}\0{self.version}".encode()).hexdigest()[:8]
        return f"{readable}_{digest}"


# adapter_config.json fields by which an adapter carries whole copies of base modules or token rows of its own.
WHOLE_MODULE_FIELDS = ("modules_to_save", "trainable_token_indices")


def check_adapter(ref: AdapterRef, base_model_id: str, base_weights_sha256: str | None = None) -> dict[str, Any]:
    """Validate an adapter directory without loading it into a model; return its PEFT config.

    ``base_weights_sha256``: the loaded base model's weights hash; when given, lineage is checked by weights."""
    where = f"adapter {ref.style} {ref.version} ({ref.directory})"
    if not ref.directory.is_dir():
        raise AdapterError(f"{where} does not exist; train it or set the style's adapter to null")
    pickles = sorted(p.name for p in ref.directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise AdapterError(f"{where} contains pickle files {pickles}: refused, copydesk loads safetensors only")
    config = _read_json(ref.directory / ADAPTER_CONFIG, where)
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{where}: peft_type is {config.get('peft_type')!r}, expected 'LORA'")
    for field in WHOLE_MODULE_FIELDS:
        if config.get(field):
            raise AdapterError(
                f"{where}: adapter_config.json field {field!r} is {config[field]!r}: copydesk serves LoRA adapters "
                "without whole modules or trainable tokens of their own (the engine's packed layers cannot be copied); "
                "train the style without it"
            )
    _check_base_model(ref, config, base_model_id, base_weights_sha256, where)
    _check_weights(ref.directory / ADAPTER_WEIGHTS, where)
    return config


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdapterError(f"{where} has no {path.name}") from exc
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{where}: {path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AdapterError(f"{where}: {path.name} must be a JSON object")
    return data


def _check_base_model(
    ref: AdapterRef, config: dict[str, Any], base_model_id: str, base_weights_sha256: str | None, where: str
) -> None:
    meta_path = ref.directory / ADAPTER_META
    meta = _read_json(meta_path, where) if meta_path.is_file() else None
    trained_for = recorded_base(meta, config)
    trained_on = (meta or {}).get("base_model_weights_sha256")
    if trained_on and base_weights_sha256 and trained_on != base_weights_sha256:
        same_name = " under the same name" if trained_for == base_model_id else ""
        raise AdapterError(
            f"{where} was trained on base model {trained_for!r} with weights sha256 {trained_on}, but the "
            f"configured base model {base_model_id!r} has weights sha256 {base_weights_sha256}: other weights"
            f"{same_name}; retrain the style on this model or set COPYDESK_MODEL to its base model"
        )
    if trained_for and trained_for != base_model_id:
        same_weights = bool(trained_on and trained_on == base_weights_sha256)
        hint = (
            f" (the weights are the same: name the model {trained_for!r} in its {ID_FILE} file)" if same_weights else ""
        )
        raise AdapterError(
            f"{where} was trained for base model {trained_for!r}, but the configured base model is "
            f"{base_model_id!r}: retrain the style or set COPYDESK_MODEL to its base model{hint}"
        )


def recorded_base(meta: dict[str, Any] | None, config: dict[str, Any]) -> str | None:
    """The base model an adapter says it was trained for: its copydesk metadata's ``base_model_id`` when it has
    that file (``meta``), else PEFT's ``base_model_name_or_path`` in its config; ``None`` when neither says."""
    found = meta.get("base_model_id") if meta is not None else config.get("base_model_name_or_path")
    return found if isinstance(found, str) and found else None


def recorded_base_model(directory: Path) -> str | None:
    """:func:`recorded_base` of an adapter folder, read leniently: ``None`` when its files are missing or unreadable
    (:func:`check_adapter` reports those when the adapter is loaded or promoted)."""
    try:
        meta_path = directory / ADAPTER_META
        meta = _read_json(meta_path, str(directory)) if meta_path.is_file() else None
        config = _read_json(directory / ADAPTER_CONFIG, str(directory)) if meta is None else {}
    except AdapterError:
        return None
    return recorded_base(meta, config)


def adapter_sha256(directory: Path) -> str:
    """SHA-256 of an adapter's exact bytes: over its config's and its weights' names and SHA-256s."""
    digest = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        file_digest = hashlib.sha256()
        with (directory / name).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(chunk)
        digest.update(name.encode() + b"\0" + file_digest.hexdigest().encode())
    return digest.hexdigest()


def _check_weights(path: Path, where: str) -> None:
    if not path.is_file():
        raise AdapterError(f"{where} has no {ADAPTER_WEIGHTS}")
    import torch

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            # A corrupt file can have a valid header and NaN/inf weights: they would turn every row of a
            # mixed batch into NaN logits and fail the other styles' briefs too. LoRA weights are small.
            not_finite = next((key for key in keys if not torch.isfinite(handle.get_tensor(key)).all()), None)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise AdapterError(f"{where}: {ADAPTER_WEIGHTS} is corrupt or unreadable: {exc}") from exc
    if not keys:
        raise AdapterError(f"{where}: {ADAPTER_WEIGHTS} holds no tensors")
    if not_finite is not None:
        raise AdapterError(
            f"{where}: {ADAPTER_WEIGHTS} is corrupt: tensor {not_finite!r} holds NaN or infinite values; "
            "retrain the style or restore the file"
        )


class AdapterRegistry:
    """Loads each adapter into the PEFT model once; evicts the least recently used beyond ``capacity``."""

    def __init__(self, base_model_id: str, capacity: int = 8, base_weights_sha256: str | None = None) -> None:
        self.base_model_id = base_model_id
        self.base_weights_sha256 = base_weights_sha256
        self.capacity = capacity
        self.loaded: OrderedDict[str, AdapterRef] = OrderedDict()
        self.refused: dict[str, str] = {}
        self.digests: dict[str, str] = {}  # adapter name -> adapter_sha256 of the bytes loaded under it

    def sha256(self, ref: AdapterRef) -> str | None:
        """The SHA-256 of the adapter bytes loaded for ``ref`` (:func:`adapter_sha256`); ``None`` if never loaded."""
        return self.digests.get(ref.name)

    def ensure(self, model: Any, ref: AdapterRef) -> Any:
        """Return the model with ``ref`` loaded (wrapping the base model in a PeftModel the first time)."""
        if ref.name in self.refused:
            raise AdapterError(self.refused[ref.name])
        if ref.name in self.loaded:
            self.loaded.move_to_end(ref.name)
            return model
        try:
            check_adapter(ref, self.base_model_id, self.base_weights_sha256)
            digest = self._digest(ref)
            loaded = self._load(model, ref)
            self._probe(model, loaded, ref)
            model = loaded
        except AdapterError as exc:
            self.refused[ref.name] = str(exc)
            raise
        self.loaded[ref.name] = ref
        self.digests[ref.name] = digest
        logger.info("loaded adapter %s %s from %s (sha256 %s)", ref.style, ref.version, ref.directory, digest[:12])
        self._evict(model, keep=ref.name)
        return model

    @staticmethod
    def _digest(ref: AdapterRef) -> str:
        try:
            return adapter_sha256(ref.directory)
        except OSError as exc:  # the files went away or became unreadable after the checks
            raise AdapterError(f"adapter {ref.style} {ref.version} ({ref.directory}) cannot be read: {exc}") from exc

    def _load(self, model: Any, ref: AdapterRef) -> Any:
        from peft import PeftModel

        try:
            if isinstance(model, PeftModel):
                model.load_adapter(str(ref.directory), adapter_name=ref.name, use_safetensors=True)
                return model
            wrapped = PeftModel.from_pretrained(model, str(ref.directory), adapter_name=ref.name, use_safetensors=True)
            wrapped.eval()
            return wrapped
        except Exception as exc:  # peft/torch raise many types for shape or key mismatches
            raise AdapterError(f"adapter {ref.style} {ref.version} failed to load: {exc}") from exc

    def _probe(self, before: Any, model: Any, ref: AdapterRef) -> None:
        """One short forward pass with the new adapter; non-finite logits (weights so corrupt that they
        overflow) unload it again, so that it cannot spoil the rows of other styles, and refuse it."""
        import torch

        vocab = int(getattr(model.config, "vocab_size", 0) or 0)
        device = next(model.parameters()).device
        input_ids = torch.arange(1, 1 + max(1, min(8, vocab - 1)), device=device).unsqueeze(0)
        try:
            with torch.inference_mode():
                logits = model(input_ids=input_ids, adapter_names=[ref.name]).logits
            finite = bool(torch.isfinite(logits).all())
        except Exception as exc:  # torch/peft raise many types
            finite, problem = False, f"a test forward pass with {ADAPTER_WEIGHTS} failed: {exc}"
        else:
            problem = f"{ADAPTER_WEIGHTS} is corrupt: a test forward pass gives NaN or infinite logits"
        if finite:
            return
        if model is before:
            model.delete_adapter(ref.name)
        else:  # freshly wrapped: take the LoRA layers out of the base model again
            model.unload()
        raise AdapterError(
            f"adapter {ref.style} {ref.version} ({ref.directory}): {problem}; retrain the style or restore the file"
        )

    def _evict(self, model: Any, keep: str) -> None:
        while len(self.loaded) > self.capacity:
            name, ref = next(iter(self.loaded.items()))
            if name == keep:
                break
            model.delete_adapter(name)
            del self.loaded[name]
            logger.info("evicted adapter %s %s (least recently used)", ref.style, ref.version)
