"""How a vector is taken from the model: which final-layer states, and what the prompt ends with.

InBedder's embedding is the state just before the answer. A decoder (the paper's
OPT / LLaMA / SmolLM) answers after the last prompt token, so that token's state is
the vector (`LAST_TOKEN`). A masked LM (the paper's RoBERTa) answers into <mask>
slots after the prompt, so the vector is the mean of those slots' states
(`MASK_MEAN`). The pooling is chosen at load from the model's kind and named in the
fingerprint by its `description`: changing a description changes every stored
fingerprint of that kind, so descriptions are fixed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inbedder.engine.prompts import MASK_COUNT

if TYPE_CHECKING:
    import torch

    from inbedder.engine.forward import ForwardPlan


@dataclass(frozen=True)
class Pooling:
    name: str
    description: str  # as the fingerprint names it
    mask_slots: int  # <mask> tokens after the prompt (0: none)

    @property
    def reads_mask_slots(self) -> bool:
        return self.mask_slots > 0

    @property
    def template_suffix(self) -> str:
        """What the recorded template ends with after the response cue."""
        return "<mask>" * self.mask_slots

    def prompt_suffix(self, tokenizer) -> str:
        return tokenizer.mask_token * self.mask_slots if self.mask_slots else ""

    def states(self, plan: ForwardPlan, seqs_per_instruction: Sequence[Sequence[Sequence[int]]],
               mask_token_id: int | None) -> np.ndarray:
        """(instructions, texts, dim) float32 vectors for tokenised prompts, through the engine's forward plan."""
        from inbedder.engine.forward import decoder_last_states, masked_slot_states

        if self.reads_mask_slots:
            assert mask_token_id is not None
            return np.stack([masked_slot_states(plan, per, mask_token_id) for per in seqs_per_instruction])
        return decoder_last_states(plan, seqs_per_instruction)

    def pool(self, hidden: torch.Tensor, slots: torch.Tensor | None = None,
             last_positions: torch.Tensor | None = None) -> torch.Tensor:
        """The same vectors from a full forward's final-layer states (training, the reference path):
        `slots` marks the <mask> positions (MASK_MEAN), `last_positions` the last prompt token (LAST_TOKEN)."""
        import torch

        if self.reads_mask_slots:
            assert slots is not None
            weights = slots.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        assert last_positions is not None
        return hidden[torch.arange(hidden.shape[0]), last_positions]


LAST_TOKEN = Pooling("last-token", "final-layer state of last prompt token", 0)
MASK_MEAN = Pooling("mask-mean", "mean of final-layer <mask> states", MASK_COUNT)


def pooling_for(masked: bool) -> Pooling:
    """The pooling a model's kind answers with (a masked LM: its <mask> slots; a decoder: its last token)."""
    return MASK_MEAN if masked else LAST_TOKEN
