"""Length-sorted, token-budget batches: little padding, bounded memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int = 512) -> list[np.ndarray]:
    """Group positions so that rows x longest row stays within the budget.

    Longest rows come first so an out-of-memory batch shows up at once, not at the end.
    A single row longer than the budget still gets a batch of its own.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, min(max_batch_size, token_budget // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def padding_share(lengths: Sequence[int], batches: Sequence[np.ndarray]) -> float:
    """Fraction of computed positions that are padding (for the run report)."""
    real = sum(int(lengths[i]) for b in batches for i in b)
    padded = sum(len(b) * max(int(lengths[i]) for i in b) for b in batches if len(b))
    return 0.0 if padded == 0 else 1.0 - real / padded
