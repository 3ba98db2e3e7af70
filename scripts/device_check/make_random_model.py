"""MODEL_DIR: a randomly initialised model of the default base model's shape (its config from .devcheck, the
SmolLM2 tokenizer from TOKENIZER_DIR); STYLES_DIR: a copy of styles/ whose adapters drop the base weights' hash
(they were trained on the real weights, so lineage by weights would rightly refuse them on random ones).

Throughput on it is the real model's (same shapes, same kernels); its texts are noise."""

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
model_dir, styles_dir, tokenizer_dir = (Path(a) for a in sys.argv[1:4])
shutil.copytree(ROOT / ".devcheck" / "smollm2-config", model_dir, dirs_exist_ok=True)
shutil.copytree(tokenizer_dir, model_dir, dirs_exist_ok=True)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=torch.float32)
model.save_pretrained(model_dir, safe_serialization=True)
shutil.copytree(ROOT / "styles", styles_dir, dirs_exist_ok=True)
for meta in styles_dir.glob("*/adapters/*/copydesk-adapter.json"):
    record = json.loads(meta.read_text())
    record.pop("base_model_weights_sha256", None)
    meta.write_text(json.dumps(record, indent=2))
print("random model", model_dir, sum(p.numel() for p in model.parameters()), "parameters")
