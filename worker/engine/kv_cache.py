"""A preallocated KV cache for the engine's own decoding loop.

``transformers``' dynamic cache grows by concatenation, which copies every layer's whole cache at every
step. The engine knows each batch's longest possible sequence up front, so its cache holds that many
positions from the start: ``update`` writes the new positions in place and returns views. Dropping rows
(finished sequences) selects along the batch dimension once.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in buffers of ``capacity`` positions."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, key_dim = key_states.shape
        self.device = key_states.device
        self.key_buffer = key_states.new_empty(batch, heads, self.capacity, key_dim)
        self.value_buffer = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {end} positions, capacity {self.capacity}")
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys = self.key_buffer[:, :, :end]
        self.values = self.value_buffer[:, :, :end]
        return self.keys, self.values

    def allocate(self, batch: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Zeroed buffers for ``batch`` rows, shaped like ``keys`` and ``values`` ([rows, heads, positions, dim]).

        Filled from outside (shared prefixes, see :mod:`worker.engine.prefix_sharing`) rather than by a forward;
        padding columns that nothing writes stay zero, finite under the attention mask that hides them.
        """
        _, heads, _, key_dim = keys.shape
        self.device = keys.device
        self.key_buffer = keys.new_zeros(batch, heads, self.capacity, key_dim)
        self.value_buffer = values.new_zeros(batch, heads, self.capacity, values.shape[-1])
        self.is_initialized = True

    def write(self, row: int, column: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put one row's ``keys``/``values`` ([heads, positions, dim]) at ``column`` onwards."""
        end = column + keys.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {end} positions, capacity {self.capacity}")
        self.key_buffer[row, :, column:end] = keys
        self.value_buffer[row, :, column:end] = values

    def advance(self, length: int) -> None:
        """Treat the first ``length`` positions as filled (by :meth:`write`); the next forward appends after them."""
        self.length = length
        self.keys = self.key_buffer[:, :, :length]
        self.values = self.value_buffer[:, :, :length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]


def preallocated_cache(model: Any, capacity: int) -> Cache:
    """A cache of ``capacity`` positions per row for every decoder layer of ``model``."""
    layers = int(model.config.get_text_config(decoder=True).num_hidden_layers)
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(layers)])
