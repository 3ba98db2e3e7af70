#!/usr/bin/env bash
# Build .devcheck/, the bundle scripts/device_check/run.sh needs on a GPU machine lent by the workplace's
# `device` tool (docs/models.md, "CUDA"). That machine has its own python3 (3.12) with torch, transformers,
# peft, sentence-transformers and pytest, reaches no package registry, and takes at most 64 MiB of working tree
# (the repository is ~52 MiB). The bundle holds what it lacks, small:
#   site.tar.xz   the other packages the tests import, unpacked from cp312 wheels (pyphen: English only);
#   files.tar.xz  the SmolLM2 tokenizer saved from the packaged GGUF (the 94 MB GGUF cannot travel) and
#                 all-MiniLM-L6-v2's small files (its 87 MB weights cannot travel: random ones are made there);
#   smollm2-config/  the default base model's config, for a random model of its shape (bench only).
# Run it here after ./scripts/setup.sh; then call the device tool with carry [".devcheck"] and the command
# `bash scripts/device_check/run.sh` (it writes to the tool's $OUT, which comes back; with
# MARK="cuda and not cuda" it skips the tests and runs the benches only).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
BUNDLE=.devcheck
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE" "$WORK/wheels" "$WORK/site" "$WORK/files"
# Packages the device test modules import that the device image lacks (read off its package list, 2026-12).
MISSING=(SQLAlchemy annotated-types datasets defusedxml dill gguf multiprocess nltk platformdirs pydantic
    pydantic-settings pydantic_core pyphen python-dotenv pytz textstat trl typing-inspection vaderSentiment)
pins=()
for name in "${MISSING[@]}"; do
    pins+=("$name==$($PY -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WORK/wheels" "${pins[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
for wheel in "$WORK"/wheels/*.whl; do unzip -q -o "$wheel" -d "$WORK/site"; done
find "$WORK/site/pyphen/dictionaries" -type f ! -name 'hyph_en*' -delete
tar -C "$WORK" -cJf "$BUNDLE/site.tar.xz" site
$PY - "$WORK/files" <<'PY'
import shutil, sys
from pathlib import Path

sys.path.insert(0, "tests")
from tiny_model import packaged_gguf_dir
from transformers import AutoTokenizer

from worker.scoring.embeddings import packaged_model_dir

out = Path(sys.argv[1])
gguf_dir, gguf_name = packaged_gguf_dir()
AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name).save_pretrained(out / "smollm2-tokenizer")
shutil.copytree(packaged_model_dir(), out / "minilm", ignore=shutil.ignore_patterns("*.safetensors", "*.md"))
PY
tar -C "$WORK/files" -cJf "$BUNDLE/files.tar.xz" smollm2-tokenizer minilm
model_dir=$($PY -c "from worker.config import load_settings; from worker.engine.base_model import resolve_base_model; print(resolve_base_model(load_settings()).directory)" 2>/dev/null)
mkdir -p "$BUNDLE/smollm2-config"
cp "$model_dir/config.json" "$model_dir/generation_config.json" "$model_dir/copydesk-model-id" "$BUNDLE/smollm2-config/"
du -sh "$BUNDLE"
