"""Shared prompt prefixes: compute the keys and values of a prefix once for all the rows of a batch that have it.

Prompts of one style and one template begin with the same tokens (the chat template, the style's system
prompt, the template's instructions) and the two candidates of a brief share their whole prompt. Prefilling
a batch recomputes those tokens in every row. Instead, the engine runs each shared prefix once, in a
single-row pass on the rows' adapter, copies its keys and values into the rows' cache slots, and prefills
the batch only from column :attr:`PrefixPlan.start` on.

Rows are left-padded: a row of ``n`` tokens in a batch ``width`` columns wide occupies columns ``width - n``
to ``width``. The batch forward computes a rectangle (every row, the last ``window`` columns), so every row
needs its first ``n - window`` tokens from a prefix pass. :func:`plan_prefixes` picks the window and the
grouping that compute the fewest positions: for each window it groups the rows of one adapter, in token
order, into as few passes as their common prefixes allow, counting each pass's tokens plus a fixed
:data:`PASS_COST` for running it at all.

Rows whose whole prompt is the same (the candidates of one brief: one prompt, their own seeds) on the same adapter
need not be prefilled apart at all: :func:`distinct_rows` finds them, the engine prefills one row of each and copies
its cache to the others before the first token is sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

# Positions of batch prefill that one more single-row pass costs beyond its own tokens. Measured on the
# 2-core CPU with three all-linear LoRA adapters loaded: a single-row pass costs ~100 ms whatever its length
# (walking 30 layers of PEFT-wrapped modules), about 250 positions of a 32-row bf16 prefill (~0.4 ms each).
PASS_COST = 256


@dataclass(frozen=True)
class DistinctRows:
    """The rows of a batch to prefill (``first``: one per distinct prompt and adapter, in batch order) and, for every
    row of the batch, the index into ``first`` of the row that computes its prompt (``of_row``)."""

    first: tuple[int, ...]
    of_row: tuple[int, ...]


def distinct_rows(tokens: Sequence[Sequence[int]], names: Sequence[str]) -> DistinctRows | None:
    """Which rows of a batch repeat an earlier row's prompt (``tokens``, padded or not, the same for both) on the same
    adapter ``names``; ``None`` when every row is distinct."""
    if len(tokens) != len(names):
        raise ValueError(f"{len(tokens)} rows of tokens but {len(names)} adapter names")
    index: dict[tuple[str, tuple[int, ...]], int] = {}
    first: list[int] = []
    of_row: list[int] = []
    for row, (row_tokens, name) in enumerate(zip(tokens, names, strict=True)):
        key = (name, tuple(row_tokens))
        if key not in index:
            index[key] = len(first)
            first.append(row)
        of_row.append(index[key])
    if len(first) == len(tokens):
        return None
    return DistinctRows(tuple(first), tuple(of_row))


@dataclass(frozen=True)
class SharedPrefix:
    """A prefix computed once, in one pass on adapter ``name``, for the batch rows ``rows``."""

    name: str
    tokens: tuple[int, ...]
    rows: tuple[int, ...]


@dataclass(frozen=True)
class PrefixPlan:
    prefixes: tuple[SharedPrefix, ...]
    start: int  # first column the batch forward computes; every row's columns before it come from a prefix
    width: int  # columns of the padded batch
    cost: int  # positions computed (passes, their fixed cost, and the batch rectangle)

    def begin(self, length: int) -> int:
        """First column of a row of ``length`` tokens (left padding)."""
        return self.width - length


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


@dataclass(frozen=True)
class _Group:
    """The rows of one adapter in token order, and how many tokens each shares with the next."""

    name: str
    rows: list[int]
    links: list[int]


def _groups(tokens: Sequence[Sequence[int]], names: Sequence[str]) -> list[_Group]:
    by_name: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        by_name.setdefault(name, []).append(row)
    groups = []
    for name, rows in by_name.items():
        ordered = sorted(rows, key=lambda row: tokens[row])
        links = [common_length(tokens[a], tokens[b]) for a, b in pairwise(ordered)]
        groups.append(_Group(name, ordered, links))
    return groups


def _passes(group: _Group, lengths: Sequence[int], window: int) -> list[tuple[list[int], int]]:
    """The group's rows cut into runs that one pass can serve for this ``window``, each with the number of
    tokens its pass computes (the most any of its rows needs); rows that need nothing are left out."""
    passes: list[tuple[list[int], int]] = []
    run: list[int] = []
    need, shared = 0, 0  # shared: tokens the run's first row has in common with every row since
    for index, row in enumerate(group.rows):
        if run:
            shared = min(shared, group.links[index - 1])
        row_need = lengths[row] - window
        if row_need <= 0:
            continue
        if run and max(need, row_need) <= shared:
            run.append(row)
            need = max(need, row_need)
            continue
        if run:
            passes.append((run, need))
        run, need, shared = [row], row_need, lengths[row]
    if run:
        passes.append((run, need))
    return passes


def plan_prefixes(
    tokens: Sequence[Sequence[int]],
    names: Sequence[str],
    *,
    pass_cost: int = PASS_COST,
    width: int | None = None,
) -> PrefixPlan | None:
    """The cheapest plan for a batch of rows with these (unpadded) ``tokens`` on these adapter ``names``, or
    ``None`` when prefilling every column in the batch forward is as cheap. ``width``: the padded batch's columns
    when it is padded beyond its longest row (default: the longest row)."""
    if len(tokens) != len(names) or len(tokens) < 2:
        return None
    lengths = [len(t) for t in tokens]
    longest = max(lengths)
    width = longest if width is None else width
    if width < longest:
        raise ValueError(f"a batch {width} columns wide cannot hold a row of {longest} tokens")
    groups = _groups(tokens, names)
    best: tuple[int, int, list[tuple[str, list[int], int]]] | None = None
    for window in range(1, longest):
        passes = [(g.name, run, need) for g in groups for run, need in _passes(g, lengths, window)]
        cost = len(tokens) * window + sum(need + pass_cost for _, _, need in passes)
        if best is None or cost < best[0]:
            best = (cost, window, passes)
    if best is None or best[0] >= len(tokens) * width:
        return None
    cost, window, passes = best
    prefixes = tuple(SharedPrefix(name, tuple(tokens[run[0]][:need]), tuple(run)) for name, run, need in passes)
    return PrefixPlan(prefixes, width - window, width, cost)
