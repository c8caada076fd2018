"""The engine must give the reference path's vectors, whatever the batching."""

from __future__ import annotations

import numpy as np

from inbedder.engine.reference import reference_encode

TEXTS = [
    "I am still waiting on my card?",
    "What can I do if my card still hasn't arrived after 2 weeks?",
    "How do I top up with cash?",
    "My card payment was declined twice today and I'm furious about it, this is the third time this month.",
    "ok",
    "Can I change my PIN at an ATM or only in the app, and does it cost anything?",
    "Why is there an extra fee on my statement?",
]
TOPIC = "What is the topic?"
FEELING = "How does the writer feel?"


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_engine_equals_reference(tiny):
    engine = tiny.encode(TEXTS, TOPIC)
    reference = reference_encode(tiny.loaded, TEXTS, TOPIC, max_length=tiny.max_length, batch_size=3)
    assert engine.shape == (len(TEXTS), tiny.dim) and engine.dtype == np.float32
    assert cosine_rows(engine, reference).min() >= 0.9999
    assert np.isfinite(engine).all()


def test_vector_does_not_depend_on_batch_mates(tiny):
    alone = np.stack([tiny.encode([t], TOPIC)[0] for t in TEXTS])
    together = tiny.encode(TEXTS * 3, TOPIC)  # different batches, different padding
    for k in range(3):
        np.testing.assert_allclose(together[k * len(TEXTS) : (k + 1) * len(TEXTS)], alone, rtol=1e-4, atol=1e-4)


def test_multi_instruction_call_equals_separate_calls(tiny):
    both = tiny.encode(TEXTS, {"topic": TOPIC, "feeling": FEELING})
    np.testing.assert_allclose(both["topic"], tiny.encode(TEXTS, TOPIC), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(both["feeling"], tiny.encode(TEXTS, FEELING), rtol=1e-4, atol=1e-4)


def test_questions_change_the_vector(tiny):
    both = tiny.encode(TEXTS, {"topic": TOPIC, "feeling": FEELING})
    assert cosine_rows(both["topic"], both["feeling"]).max() < 0.99999


def test_left_truncation_keeps_the_instruction(tiny):
    long_text = " ".join(f"word{i}" for i in range(400))
    (ids,) = tiny.prompts.tokenize([long_text], TOPIC)
    assert len(ids) == tiny.max_length
    decode = lambda part: tiny.loaded.tokenizer.decode(part).lower().replace(" ", "")  # noqa: E731
    assert "response:" in decode(ids[-20:]) and "topic" in decode(ids[-20:])
    assert "word399" in decode(ids)  # the input's end survives, its beginning doesn't
    assert "word0word1" not in decode(ids) and "input:" not in decode(ids)
    engine = tiny.encode([long_text, "short one"], TOPIC)
    reference = reference_encode(tiny.loaded, [long_text, "short one"], TOPIC, max_length=tiny.max_length)
    assert cosine_rows(engine, reference).min() >= 0.9999


def test_truncated_text_under_several_instructions(tiny):
    long_text = " ".join(f"word{i}" for i in range(400))
    both = tiny.encode([long_text], {"topic": TOPIC, "feeling": "How does the writer of this text feel about it?"})
    np.testing.assert_allclose(both["topic"], tiny.encode([long_text], TOPIC), rtol=1e-4, atol=1e-4)


def test_answers_are_deterministic(tiny):
    first = tiny.answer(TEXTS, FEELING, max_new_tokens=5)
    assert first == tiny.answer(list(TEXTS), FEELING, max_new_tokens=5)
    assert len(first) == len(TEXTS) and all(isinstance(a, str) for a in first)
