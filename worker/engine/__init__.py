"""Model + adapters -> tokens: base model, LoRA adapters, the batched decode loop and its kernels."""
