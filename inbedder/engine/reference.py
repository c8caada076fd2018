"""The paper repository's way of getting an InBedder vector, kept as the yardstick.

Decoder models: `generate(..., output_hidden_states=True)` and the last prompt
token's final-layer state from the first generation step. Masked LMs: a full
forward with hidden states and the mean over the <mask> slots. Texts stay in
input order with a fixed batch size, as a user of that code would run it. Used
by tests (the engine must match it) and benchmarks (the engine must beat it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inbedder.engine.loading import LoadedModel
from inbedder.engine.prompts import format_prompt


@torch.inference_mode()
def reference_encode(
    loaded: LoadedModel,
    texts: Sequence[str],
    instruction: str,
    *,
    max_length: int = 512,
    batch_size: int = 16,
    max_new_tokens: int = 1,
) -> np.ndarray:
    """The paper repo's released configs use batch_size=64 and max_new_tokens=20 (benchmarks use those)."""
    tok = loaded.tokenizer
    suffix = loaded.pooling.prompt_suffix(tok)
    prompts = [format_prompt(t, instruction) + suffix for t in texts]
    out = []
    for start in range(0, len(prompts), batch_size):
        feats = tok(
            prompts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
            return_tensors="pt",
        ).to(loaded.device)
        if loaded.pooling.reads_mask_slots:
            hidden = loaded.model(**feats, output_hidden_states=True, return_dict=True).hidden_states[-1]
            slots = (feats["input_ids"] == tok.mask_token_id).unsqueeze(-1).to(hidden.dtype)
            vecs = (hidden * slots).sum(1) / slots.sum(1)
        else:
            gen = loaded.model.generate(
                **feats, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                temperature=None, top_p=None, top_k=None,
                pad_token_id=tok.pad_token_id,
                output_hidden_states=True, return_dict_in_generate=True,
            )
            vecs = gen.hidden_states[0][-1][:, -1, :]
        out.append(vecs.float().cpu().numpy())
    return np.concatenate(out)
