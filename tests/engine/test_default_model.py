"""The embedded default (SmolLM2-135M-Instruct) on real texts from ../shared/data."""

from __future__ import annotations

import numpy as np

from inbedder.engine.reference import reference_encode

INTENT = "What does the customer want?"
FEELING = "How does the customer feel?"


def cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_default_model_equals_reference_on_banking77(default_model, banking_texts):
    texts = banking_texts[:24]
    engine = default_model.encode(texts, INTENT)
    reference = reference_encode(default_model.loaded, texts, INTENT, batch_size=8)
    assert engine.shape == (24, 576)
    assert cos(engine, reference).min() >= 0.9999


def test_default_model_equals_reference_on_long_contexts(default_model, xquad_contexts):
    texts = xquad_contexts[:6]
    engine = default_model.encode(texts, "What is this passage about?")
    reference = reference_encode(default_model.loaded, texts, "What is this passage about?", batch_size=3)
    assert cos(engine, reference).min() >= 0.9999


def test_default_model_multi_instruction_and_answers(default_model, banking_texts):
    texts = banking_texts[:12]
    both = default_model.encode(texts, {"intent": INTENT, "feeling": FEELING})
    np.testing.assert_allclose(both["feeling"], default_model.encode(texts, FEELING), rtol=1e-4, atol=1e-4)
    answers = default_model.answer(texts[:4], INTENT, max_new_tokens=8)
    assert answers == default_model.answer(texts[:4], INTENT, max_new_tokens=8)
    assert all(a.strip() for a in answers)


def test_default_model_identity(default_model):
    meta = default_model.metadata()
    assert meta["dim"] == 576 and "SmolLM2-135M-Instruct" in meta["model"]
    assert len(default_model.fingerprint) == 32
