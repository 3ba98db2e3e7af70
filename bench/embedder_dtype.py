"""The on_topic embedder (all-MiniLM-L6-v2) in float32, in bf16 and in bf16 without packed matmuls, side by side.

A worker whose engine writes in bf16 scores with a bf16 embedder (``embedder_dtype_for``); in the engine's exact
(fp32) mode the embedder stays float32. The bf16 embedder's linear layers run as packed oneDNN matmuls
(``worker.engine.packed_linear``); "bfloat16-unpacked" is the same without them. This prints the time to encode the
same texts with each (median of ``--repeats``, alternating, in one process) and how far the vectors and the pairwise
cosines (what on_topic is made of) move.

``--int8`` adds torch's dynamic int8 linear layers (fbgemm: int8 weights, activations quantised with one scale per
call) on the float32 embedder, the one fast int8 path in stock torch, and how far its vectors move (also between a
text encoded alone and among the others: one scale per call makes a text's vector depend on its batch).

    python bench/embedder_dtype.py --texts 64 --words 300 --repeats 3 --threads 2
    python bench/embedder_dtype.py --texts 64 --words 300 --repeats 3 --threads 2 --int8
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from worker.scoring.embeddings import Embedder

ROOT = Path(__file__).resolve().parent.parent


def sample_texts(count: int, words: int) -> list[str]:
    """``count`` texts of ``words`` words drawn from the repository's docs (a fixed seed)."""
    vocabulary = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))).split()
    generator = random.Random(0)
    return [" ".join(generator.choice(vocabulary) for _ in range(words)) for _ in range(count)]


def int8_dynamic() -> Embedder:
    """The float32 embedder with torch's dynamic int8 linear layers (fbgemm)."""
    embedder = Embedder(dtype="float32")
    with warnings.catch_warnings():  # torch.ao's eager quantisation announces its move to torchao
        warnings.simplefilter("ignore")
        # A measurement only: the embedder has no int8 mode, so its model is swapped here.
        embedder._model = torch.ao.quantization.quantize_dynamic(embedder._model, {torch.nn.Linear}, dtype=torch.qint8)
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also torch's dynamic int8 linear layers (fbgemm)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = sample_texts(args.texts, args.words)
    embedders = {
        "float32": Embedder(dtype="float32"),
        "bfloat16": Embedder(dtype="bfloat16"),
        "bfloat16-unpacked": Embedder(dtype="bfloat16", packed=False),
    }
    if args.int8:
        embedders["int8-dynamic"] = int8_dynamic()
    seconds: dict[str, list[float]] = {name: [] for name in embedders}
    vectors = {name: e.encode(texts[:4]) for name, e in embedders.items()}  # warm-up
    for _ in range(args.repeats):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            vectors[name] = embedder.encode(texts)
            seconds[name].append(time.perf_counter() - started)
    exact, approx = vectors["float32"], vectors["bfloat16"]
    cosine_shift = np.abs(exact @ exact.T - approx @ approx.T).max()
    print(f"cpu: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{args.texts} texts of {args.words} words, median of {args.repeats} (alternating)")
    print("| embedder | seconds | ms per text | runs |")
    print("|---|---:|---:|---|")
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {1000 * median / args.texts:.1f} | {', '.join(f'{r:.2f}' for r in runs)} |")
    ratio = statistics.median(seconds["float32"]) / statistics.median(seconds["bfloat16"])
    packing = statistics.median(seconds["bfloat16-unpacked"]) / statistics.median(seconds["bfloat16"])
    unpacked = vectors["bfloat16-unpacked"]
    print(f"bf16 speed-up {ratio:.2f}x; largest vector change {np.abs(exact - approx).max():.4f}; "
          f"largest pairwise cosine change {cosine_shift:.4f}")  # fmt: skip
    print(f"packed against unpacked bf16: {packing:.2f}x; largest vector change {np.abs(unpacked - approx).max():.4f}; "
          f"largest pairwise cosine change {np.abs(unpacked @ unpacked.T - approx @ approx.T).max():.4f}")  # fmt: skip
    if args.int8:
        int8 = vectors["int8-dynamic"]
        alone = {name: np.concatenate([embedders[name].encode([text]) for text in texts[:4]]) for name in embedders}
        moved = {name: np.abs(alone[name] - vectors[name][:4]).max() for name in embedders}
        others = ", ".join(f"{name} {change:.4f}" for name, change in moved.items() if name != "int8-dynamic")
        speed = statistics.median(seconds["bfloat16"]) / statistics.median(seconds["int8-dynamic"])
        print(f"int8 dynamic against bf16: {speed:.2f}x; against float32: largest vector change "
              f"{np.abs(exact - int8).max():.4f}, largest pairwise cosine change "
              f"{np.abs(exact @ exact.T - int8 @ int8.T).max():.4f}; a text alone against among the others: "
              f"largest vector change {moved['int8-dynamic']:.4f} (the others: {others})")  # fmt: skip


if __name__ == "__main__":
    main()
