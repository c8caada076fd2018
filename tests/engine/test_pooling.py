"""Pooling: one named component per way of taking a vector, chosen by the model's kind."""

from __future__ import annotations

import torch

from inbedder.engine.pooling import LAST_TOKEN, MASK_MEAN, pooling_for


def test_the_model_kind_chooses_the_pooling_and_its_prompt_suffix(tiny):
    assert pooling_for(True) is MASK_MEAN and pooling_for(False) is LAST_TOKEN
    assert tiny.loaded.pooling is pooling_for(tiny.loaded.masked)
    assert MASK_MEAN.template_suffix == "<mask><mask><mask>" and LAST_TOKEN.template_suffix == ""
    # the fingerprint names these descriptions: they are fixed (a changed one changes every stored fingerprint)
    assert MASK_MEAN.description == "mean of final-layer <mask> states"
    assert LAST_TOKEN.description == "final-layer state of last prompt token"


def test_the_full_forward_pooling_takes_the_same_states_the_engine_does():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    slots = torch.tensor([[False, True, True, False], [False, False, False, True]])
    assert torch.equal(MASK_MEAN.pool(hidden, slots=slots), torch.stack([hidden[0, 1:3].mean(0), hidden[1, 3]]))
    assert torch.equal(LAST_TOKEN.pool(hidden, last_positions=torch.tensor([2, 0])),
                       torch.stack([hidden[0, 2], hidden[1, 0]]))
