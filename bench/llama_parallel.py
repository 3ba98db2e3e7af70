"""llama.cpp (llama-cpp-python's low-level API) on the packaged GGUF: N sequences decoded in parallel.

``parallel=1`` is the single stream; ``parallel=N`` decodes N sequences in one ``llama_batch`` per step
(as llama.cpp's ``llama-parallel`` example does), each with its own sampler chain (repetition penalty,
top-p, temperature, seeded draw). Prompts are processed in groups of N; a group's finished sequences stop
being decoded. The AMX "extra buffer type" is turned off: it dies with SIGILL on batched Q4_1 matmuls.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def run(
    gguf: Path,
    prompts: list[str],
    new_tokens: int,
    parallel: int,
    *,
    temperature: float = 0.7,
    top_p: float = 0.9,
    repetition_penalty: float = 1.15,
    threads: int | None = None,
) -> dict[str, Any]:
    from llama_cpp import llama_cpp as lib

    lib.llama_backend_init()
    model_params = lib.llama_model_default_params()
    model_params.use_extra_bufts = False
    model = lib.llama_model_load_from_file(str(gguf).encode(), model_params)
    vocab = lib.llama_model_get_vocab(model)
    encoded = [_tokenize(lib, vocab, p) for p in prompts]
    longest = max(len(t) for t in encoded)
    context_params = lib.llama_context_default_params()
    context_params.n_seq_max = parallel
    context_params.n_ctx = parallel * (longest + new_tokens + 8)
    context_params.n_batch = max(512, parallel * longest)
    context_params.n_ubatch = 512
    context_params.kv_unified = True
    context_params.n_threads = context_params.n_threads_batch = threads or os.cpu_count() or 2
    ctx = lib.llama_init_from_model(model, context_params)
    batch = lib.llama_batch_init(context_params.n_batch, 0, 1)
    generated = 0
    started = time.perf_counter()
    try:
        for start in range(0, len(encoded), parallel):
            group = encoded[start : start + parallel]
            generated += _decode_group(
                lib, ctx, vocab, batch, group, new_tokens, (temperature, top_p, repetition_penalty), start
            )
    finally:
        seconds = time.perf_counter() - started
        lib.llama_batch_free(batch)
        lib.llama_free(ctx)
        lib.llama_model_free(model)
    return {
        "parallel": parallel,
        "sequences": len(prompts),
        "seconds": round(seconds, 1),
        "generated_tokens": generated,
        "tokens_per_second": round(generated / seconds, 1),
    }


def _tokenize(lib: Any, vocab: Any, text: str) -> list[int]:
    data = text.encode()
    buffer = (lib.llama_token * (len(data) + 16))()
    count = lib.llama_tokenize(vocab, data, len(data), buffer, len(buffer), False, True)
    if count < 0:
        raise RuntimeError("prompt too long to tokenize")
    return list(buffer[:count])


def _fill(batch: Any, items: list[tuple[int, int, int, bool]]) -> None:
    """Put (token, position, sequence, wants_logits) items into ``batch``."""
    for i, (token, position, sequence, logits) in enumerate(items):
        batch.token[i] = token
        batch.pos[i] = position
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = sequence
        batch.logits[i] = logits
    batch.n_tokens = len(items)


def _decode_group(
    lib: Any,
    ctx: Any,
    vocab: Any,
    batch: Any,
    group: list[list[int]],
    new_tokens: int,
    sampling: tuple[float, float, float],
    seed_base: int,
) -> int:
    temperature, top_p, penalty = sampling
    lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
    samplers = []
    for index in range(len(group)):
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(
            chain, lib.llama_sampler_init_penalties(lib.llama_vocab_n_tokens(vocab), 64, penalty, 0.0, 0.0)
        )
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed_base + index))
        samplers.append(chain)
    # Prefill every prompt of the group in one batch; logits at each prompt's last token.
    items = [(t, pos, seq, pos == len(p) - 1) for seq, p in enumerate(group) for pos, t in enumerate(p)]
    _fill(batch, items)
    if lib.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed on the prompts")
    logit_index = {seq: i for i, (_, _, seq, wants) in enumerate(items) if wants}
    position = {seq: len(p) for seq, p in enumerate(group)}
    counts = dict.fromkeys(range(len(group)), 0)
    active = list(range(len(group)))
    generated = 0
    try:
        while active:
            step: list[tuple[int, int, int, bool]] = []
            for seq in active:
                token = lib.llama_sampler_sample(samplers[seq], ctx, logit_index[seq])
                counts[seq] += 1
                if lib.llama_vocab_is_eog(vocab, token):
                    continue
                generated += 1
                if counts[seq] < new_tokens:
                    step.append((token, position[seq], seq, True))
                    position[seq] += 1
            active = [seq for _, _, seq, _ in step]
            if not step:
                break
            _fill(batch, step)
            logit_index = {seq: i for i, (_, _, seq, _) in enumerate(step)}
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
    finally:
        for chain in samplers:
            lib.llama_sampler_free(chain)
    return generated
