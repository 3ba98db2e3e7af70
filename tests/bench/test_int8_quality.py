"""bench/int8_quality.py: the int8 variants it measures compute what they claim (small tensors, no model)."""

from __future__ import annotations

import pytest
import torch
from bench_helpers import load_bench

int8_quality = load_bench("int8_quality")


def _linear(out_features: int = 24, in_features: int = 16) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(in_features, out_features)


def test_per_channel_int8_is_within_half_a_step_of_each_weight() -> None:
    weight = _linear().weight.detach()
    q, scales = int8_quality.int8_per_channel(weight)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127  # each row's largest weight uses the full range
    assert torch.all((q.float() * scales[:, None] - weight).abs() <= scales[:, None] / 2 + 1e-7)


def test_per_token_rounding_of_a_row_does_not_depend_on_the_other_rows() -> None:
    x = torch.randn(5, 16)
    together = int8_quality.per_token(x)
    alone = torch.cat([int8_quality.per_token(x[i : i + 1]) for i in range(5)])
    assert torch.equal(together, alone) and not torch.equal(together, x)


@pytest.mark.parametrize("variant", ["w8", "w8a8_token", "fbgemm_dynamic"])
def test_each_variant_stays_close_to_the_fp32_product_but_is_not_it(variant: str) -> None:
    torch.backends.quantized.engine = "fbgemm"
    linear, x = _linear(), torch.randn(4, 16)
    expected = linear(x).detach()
    got = int8_quality.variant_forward(variant, linear)(x)
    error = float((got - expected).abs().max())
    assert 0 < error < 0.05 * float(expected.abs().max()), error


def test_only_the_base_models_linear_layers_are_replaced() -> None:
    model = torch.nn.ModuleDict(
        {"q_proj": _linear(), "lora_A": torch.nn.ModuleDict({"default": _linear(4, 16)}), "norm": torch.nn.LayerNorm(4)}
    )
    assert int8_quality.apply_variant(model, "w8") == 1
    assert "forward" in model["q_proj"].__dict__ and "forward" not in model["lora_A"]["default"].__dict__


def test_ratios_are_each_variant_over_fp32_per_style() -> None:
    quality = {
        "fp32": [{"style": "a", "base": 10.0, "adapter": 5.0}],
        "w8": [{"style": "a", "base": 10.1, "adapter": 5.0}],
    }
    assert int8_quality.over_fp32(quality) == {"w8": {"a": {"base": 1.01, "adapter": 1.0}}}
