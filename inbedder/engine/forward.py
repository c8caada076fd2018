"""The embedding forward passes: no LM head, no decoding.

Decoder models: the final-layer state of the last prompt token. When several
instructions are asked of the same texts, the token prefix their prompts share
(the input part) is run once and its key/value cache reused for each question.
Masked LMs: the mean final-layer state over the three <mask> slots.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from inbedder.engine.batching import plan_batches

# stage C may repeat a batch's cache once per instruction while rows x instructions x
# longest prompt stays within this many token budgets; beyond that it loops instead
EXPANDED_CACHE_FACTOR = 4


@dataclass
class ForwardStats:
    """Token counts behind padding share and FLOP accounting."""

    real_tokens: int = 0
    computed_tokens: int = 0
    batches: int = 0

    def add(self, real: int, computed: int) -> None:
        self.real_tokens += real
        self.computed_tokens += computed
        self.batches += 1

    @property
    def padding_share(self) -> float:
        return 0.0 if not self.computed_tokens else 1.0 - self.real_tokens / self.computed_tokens


@dataclass
class ForwardPlan:
    """What a forward call needs to know about the model and the device."""

    base_model: torch.nn.Module
    pad_token_id: int
    device: torch.device
    token_budget: int
    stats: ForwardStats = field(default_factory=ForwardStats)
    on_batch_done: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        params = inspect.signature(self.base_model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if s:
            ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[row, width - len(s) :] = 1
    return ids, mask


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def _positions(mask: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Positions count real tokens only, as generate() does, so padding never shifts them."""
    pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return pos if offset is None else pos + offset[:, None]


def _common_prefix(seqs: Sequence[Sequence[int]], limit: int) -> int:
    k = 0
    while k < limit and all(s[k] == seqs[0][k] for s in seqs[1:]):
        k += 1
    return k


def shared_prefix_lengths(seqs_per_instruction: Sequence[Sequence[Sequence[int]]]) -> list[int]:
    """Per text, the tokens all its prompts share (its input part), leaving each prompt >= 1 own token."""
    n = len(seqs_per_instruction[0])
    out = []
    for t in range(n):
        seqs = [per[t] for per in seqs_per_instruction]
        out.append(_common_prefix(seqs, min(len(s) for s in seqs) - 1))
    return out


@torch.inference_mode()
def decoder_last_states(plan: ForwardPlan, seqs_per_instruction: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
    """(instructions, texts, dim) float32: the state that predicts the first answer token.

    Each batch runs in up to three stages on one key/value cache, so no token is
    computed twice: (A) the prefix every prompt in the batch starts with (the
    template's "### Input:" header), once; (B) each text's own input part, once
    for all its instructions; (C) each instruction's remainder, cropped off again
    before the next instruction.
    """
    n_instr, n = len(seqs_per_instruction), len(seqs_per_instruction[0])
    if n_instr > 1:
        own = shared_prefix_lengths(seqs_per_instruction)
    else:
        own = [len(s) - 1 for s in seqs_per_instruction[0]]
    lengths = [max(len(per[t]) for per in seqs_per_instruction) for t in range(n)]
    out: np.ndarray | None = None
    for batch in plan_batches(lengths, plan.token_budget):
        rows = [int(t) for t in batch]
        states = _batch_last_states(plan, seqs_per_instruction, rows, [own[t] for t in rows], n_instr > 1)
        if out is None:
            out = np.zeros((n_instr, n, states.shape[-1]), dtype=np.float32)
        out[:, rows] = states
        if plan.on_batch_done:
            plan.on_batch_done(len(rows))
    assert out is not None
    return out


def _batch_last_states(
    plan: ForwardPlan,
    seqs_per_instruction: Sequence[Sequence[Sequence[int]]],
    rows: list[int],
    shared: list[int],
    per_text_stage: bool,
) -> np.ndarray:
    from transformers import DynamicCache

    first = seqs_per_instruction[0]
    heads = [first[t][: shared[i]] for i, t in enumerate(rows)]
    common = _common_prefix(heads, min(shared))
    cache = DynamicCache(config=plan.base_model.config)
    mask = torch.ones((len(rows), common), dtype=torch.long)
    if common:  # stage A: one row, then the same cache serves every row
        head = torch.tensor([first[rows[0]][:common]], dtype=torch.long)
        plan.stats.add(common, common)
        plan.base_model(input_ids=head.to(plan.device), position_ids=torch.arange(common)[None].to(plan.device),
                        use_cache=True, **{plan._cache_kw: cache})
        if len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
    done = torch.full((len(rows),), common, dtype=torch.long)
    if per_text_stage and max(shared) > common:  # stage B
        parts = [first[t][common : shared[i]] for i, t in enumerate(rows)]
        mask = _extend(plan, cache, mask, parts, done)
        done = torch.tensor(shared, dtype=torch.long)
    n_instr = len(seqs_per_instruction)
    longest = max(len(per[t]) for per in seqs_per_instruction for t in rows)
    if n_instr > 1 and len(rows) * n_instr * longest <= EXPANDED_CACHE_FACTOR * plan.token_budget:
        # stage C, all instructions in one pass: each row's cache repeated once per instruction
        if cache.get_seq_length() > 0:
            cache.batch_repeat_interleave(n_instr)
        rests = [per[t][int(done[r]) :] for r, t in enumerate(rows) for per in seqs_per_instruction]
        last = _last_states(plan, cache, mask.repeat_interleave(n_instr, 0), rests, done.repeat_interleave(n_instr))
        return last.reshape(len(rows), n_instr, -1).transpose(1, 0, 2)
    states = []
    for per in seqs_per_instruction:  # stage C, one instruction at a time on the same cache
        rests = [per[t][int(done[r]) :] for r, t in enumerate(rows)]
        states.append(_last_states(plan, cache, mask, rests, done))
        cache.crop(-max(len(x) for x in rests))
    return np.stack(states)


def _last_states(
    plan: ForwardPlan, cache: object, mask: torch.Tensor, rests: Sequence[Sequence[int]], done: torch.Tensor
) -> np.ndarray:
    rest_ids, rest_mask = _left_pad(rests, plan.pad_token_id)
    plan.stats.add(int(rest_mask.sum()), rest_ids.numel())
    hidden = plan.base_model(
        input_ids=rest_ids.to(plan.device),
        attention_mask=torch.cat([mask, rest_mask], dim=1).to(plan.device),
        position_ids=_positions(rest_mask, done).to(plan.device),
        use_cache=True,
        **{plan._cache_kw: cache},
    ).last_hidden_state
    return hidden[:, -1].float().cpu().numpy()


def _extend(
    plan: ForwardPlan, cache: object, mask: torch.Tensor, parts: Sequence[Sequence[int]], done: torch.Tensor
) -> torch.Tensor:
    """Append left-padded token runs to every row's cache; returns the grown attention mask."""
    ids, part_mask = _left_pad(parts, plan.pad_token_id)
    plan.stats.add(int(part_mask.sum()), ids.numel())
    full_mask = torch.cat([mask, part_mask], dim=1)
    plan.base_model(
        input_ids=ids.to(plan.device),
        attention_mask=full_mask.to(plan.device),
        position_ids=_positions(part_mask, done).to(plan.device),
        use_cache=True,
        **{plan._cache_kw: cache},
    )
    return full_mask


@torch.inference_mode()
def masked_slot_states(plan: ForwardPlan, seqs: Sequence[Sequence[int]], mask_token_id: int) -> np.ndarray:
    """(texts, dim) float32: mean final-layer state over the <mask> slots."""
    out: np.ndarray | None = None
    for batch in plan_batches([len(s) for s in seqs], plan.token_budget):
        ids, mask = _right_pad([seqs[int(t)] for t in batch], plan.pad_token_id)
        plan.stats.add(int(mask.sum()), ids.numel())
        hidden = plan.base_model(input_ids=ids.to(plan.device), attention_mask=mask.to(plan.device)).last_hidden_state
        slots = (ids == mask_token_id).to(plan.device).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * slots).sum(dim=1) / slots.sum(dim=1).clamp(min=1)
        if out is None:
            out = np.zeros((len(seqs), hidden.shape[-1]), dtype=np.float32)
        out[batch] = pooled.float().cpu().numpy()
        if plan.on_batch_done:
            plan.on_batch_done(len(batch))
    assert out is not None
    return out
