"""Unit tests of :mod:`worker.engine.packed_linear`: packed matmuls give the plain logits and a row's bits alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_fixtures import TINY_MODEL_ID, adapter_a_dir, one_torch_thread, onednn_packs_bf16, tiny_model_dir

import worker.engine.packed_linear as packed_linear_module
from worker.engine.adapters import AdapterRef
from worker.engine.base_model import BaseModelSource, weights_hash
from worker.engine.engine import Engine
from worker.engine.grouped_projections import group_of, is_grouped
from worker.engine.packed_linear import is_packed, pack_linears

__all__ = ["adapter_a_dir", "one_torch_thread", "tiny_model_dir"]  # fixtures used by name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear(in_features: int = 64, out_features: int = 3000, *, bias: bool = False) -> torch.nn.Linear:
    torch.manual_seed(3)
    return torch.nn.Linear(in_features, out_features, bias=bias)


def hidden(rows: int, width: int = 64, seed: int = 7) -> torch.Tensor:
    return torch.randn(rows, 1, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("rows", [1, 3, 8, 32, 45])
@pytest.mark.parametrize("bias", [False, True])
def test_a_packed_layer_gives_the_plain_product(rows: int, bias: bool) -> None:
    layer = linear(bias=bias)
    x = hidden(rows)
    with torch.inference_mode():
        expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
        assert pack_linears(layer, batch_hint=32) == 1
        got = layer(x)
    assert is_packed(layer) and type(layer) is torch.nn.Linear  # PEFT still sees an nn.Linear
    assert got.shape == (rows, 1, 3000)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_rows_bits_do_not_depend_on_the_other_rows(threads: int) -> None:
    """The engine promises in fp32 that a row's text does not depend on its batch; the matmuls must keep that
    (MKL's fp32 kernels do not on every CPU: on AVX2 AMD EPYC, 1-3 rows round differently from 32)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layer = linear()
        pack_linears(layer, batch_hint=4)  # raised to the minimum hint: small hints pick row-dependent kernels
        x, other = hidden(40), hidden(40, seed=8)
        with torch.inference_mode():
            whole = layer(x)
            for rows in (1, 2, 3, 5, 8, 17, 31):
                assert torch.equal(layer(x[:rows]), whole[:rows]), rows
            mixed = torch.cat([x[:4], other[:9]])  # the same four rows beside different neighbours
            assert torch.equal(layer(mixed)[:4], whole[:4])
            prompt = torch.randn(6, 37, 64, generator=torch.Generator().manual_seed(9))  # prefill: rows x tokens
            assert torch.equal(layer(prompt[:1]), layer(prompt)[:1])
    finally:
        torch.set_num_threads(before)


def test_a_weight_changed_after_packing_is_packed_again() -> None:
    layer = linear()
    pack_linears(layer, batch_hint=32)
    x = hidden(4)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # in place
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight), rtol=1e-5, atol=1e-5)
        layer.weight = torch.nn.Parameter(torch.ones_like(layer.weight))  # replaced
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight), rtol=1e-5, atol=1e-5)


def test_only_plain_fp32_and_bf16_cpu_linears_are_packed_and_only_once() -> None:
    model = torch.nn.Sequential(
        linear(), torch.nn.ReLU(), linear(3000, 8).to(torch.bfloat16), linear(8, 8).to(torch.float16)
    )
    bf16 = onednn_packs_bf16()
    assert pack_linears(model, batch_hint=32) == 1 + bf16
    assert is_packed(model[0]) and is_packed(model[2]) is bf16 and not is_packed(model[3])
    assert pack_linears(model, batch_hint=32) == 0  # already packed (or, bf16 without oneDNN's bf16: left plain)


@pytest.mark.parametrize("rows", [1, 32, 45])
def test_a_packed_bf16_layer_gives_the_plain_bf16_product_to_rounding(rows: int) -> None:
    layer = linear().to(torch.bfloat16)
    x = hidden(rows).to(torch.bfloat16)
    with torch.inference_mode():
        expected = torch.nn.functional.linear(x, layer.weight).float()
        assert pack_linears(layer, batch_hint=32) == onednn_packs_bf16()  # else left plain: the same product
        got = layer(x)
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape
    assert torch.allclose(got.float(), expected, rtol=2e-2, atol=2e-2 * float(expected.abs().max()))


def test_a_layer_that_disagrees_on_the_probe_stays_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    original = packed_linear_module._reorder
    monkeypatch.setattr(packed_linear_module, "_reorder", lambda weight, hint: original(weight * 1.01, hint))
    layer = linear()
    assert pack_linears(layer, batch_hint=32) == 0
    assert not is_packed(layer)


def test_missing_onednn_ops_leave_the_layers_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(weight: torch.Tensor, hint: int) -> torch.Tensor:
        raise RuntimeError("mkldnn::_reorder_linear_weight is not available in this build")

    monkeypatch.setattr(packed_linear_module, "_reorder", missing)
    layer = linear()
    assert pack_linears(layer, batch_hint=32) == 0
    assert not is_packed(layer)


def test_cpu_engine_packs_the_model_and_each_adapter_it_loads(tiny_model_dir: Path, adapter_a_dir: Path) -> None:
    source = BaseModelSource(TINY_MODEL_ID, tiny_model_dir, weights_hash(tiny_model_dir))
    engine = Engine(source, device="cpu", dtype=torch.float32, batch_size=4)
    linears = [m for m in engine.model.modules() if type(m) is torch.nn.Linear]
    assert linears and all(is_packed(m) for m in linears)  # the output head included
    engine.load_adapter(AdapterRef("style-a", "v1", adapter_a_dir))
    lora = [m for name, m in engine.model.named_modules() if "lora_" in name and type(m) is torch.nn.Linear]
    assert lora and all(is_packed(m) for m in lora)

    bf16 = Engine(source, device="cpu", dtype=torch.bfloat16, batch_size=4)
    bf16_linears = [m for m in bf16.model.modules() if type(m) is torch.nn.Linear]
    grouped = [m for m in bf16_linears if is_grouped(m)]  # q/k/v, gate/up: one product per group
    packs = onednn_packs_bf16()  # else (an AVX2-only CPU) every bf16 product stays plain
    assert grouped and all((group_of(m)[0].product.packed is not None) is packs for m in grouped)  # type: ignore[index]
    assert all(is_packed(m) is packs for m in bf16_linears if not is_grouped(m))
    assert not Engine(source, device="cpu", dtype=torch.float32, packed_matmuls=False).packed_matmuls
