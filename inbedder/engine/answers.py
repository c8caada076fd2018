"""Short greedy answers: what an embedding 'means', and words to label clusters with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from inbedder.engine.batching import plan_batches
from inbedder.engine.forward import ForwardPlan, _left_pad, _right_pad

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from inbedder.engine.pooling import Pooling


@torch.inference_mode()
def greedy_answers(
    plan: ForwardPlan,
    lm: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    seqs: Sequence[Sequence[int]],
    *,
    pooling: Pooling,
    max_new_tokens: int,
) -> list[str]:
    """Deterministic (greedy) answers in input order; masked LMs read their <mask> slots."""
    answers: list[str] = [""] * len(seqs)
    for batch in plan_batches([len(s) for s in seqs], plan.token_budget):
        chosen = [seqs[int(t)] for t in batch]
        if pooling.reads_mask_slots:
            ids, mask = _right_pad(chosen, plan.pad_token_id)
            logits = lm(input_ids=ids.to(plan.device), attention_mask=mask.to(plan.device)).logits
            slots = ids == tokenizer.mask_token_id
            best = logits.argmax(-1).cpu()
            texts = [tokenizer.decode(best[r][slots[r]], skip_special_tokens=True) for r in range(len(chosen))]
        else:
            ids, mask = _left_pad(chosen, plan.pad_token_id)
            out = lm.generate(
                input_ids=ids.to(plan.device),
                attention_mask=mask.to(plan.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=plan.pad_token_id,
            )
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :].cpu(), skip_special_tokens=True)
        for t, text in zip(batch, texts):
            answers[int(t)] = text.strip()
    return answers
