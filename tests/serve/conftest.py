"""A small two-question output table, its two indexes, and a running app over them."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

TEXT_COLUMN = "utterance"  # not `text`: the page and the clusters find the column the table records
QUESTIONS = {"intent": "What does the customer want?", "feeling": "How does the customer feel?"}
TEXTS = [f"{verb} my {thing}" for verb in ("I lost", "please cancel", "thank you for", "why is", "I love", "help with")
         for thing in ("card", "transfer", "account", "loan", "pin", "refund", "app")]


def write_two_question_output(path, model, texts=TEXTS, version_tag="t"):
    from inbedder import lake
    from inbedder.lake import OutputMeta

    columns = {"id": [f"k{i}" for i in range(len(texts))], TEXT_COLUMN: texts,
               lake.KEY_HASH: [hashlib.sha256(t.encode()).hexdigest() for t in texts]}
    for name, question in QUESTIONS.items():
        columns[f"{name}_embedding"] = pa.array(list(model.encode(texts, question)), type=pa.list_(pa.float32()))
    # the job's `answers: true` stores the short answer under one question: here, a stand-in under "intent"
    columns[lake.answer_column("intent")] = [f"wants {t.split()[-1]}" for t in texts]
    columns[lake.ERROR] = pa.array([None] * len(texts), type=pa.string())
    data = pa.table(columns)
    meta = OutputMeta(model.model_name, model.fingerprint, model.template, model.dim, "id", dict(QUESTIONS),
                      TEXT_COLUMN)
    output = lake.DeltaOutput(str(path), "id")
    output.merge_rows(data, meta, lake.WaveId(version_tag, "t", output.committed_wave(version_tag) + 1))


@pytest.fixture(scope="module")
def served(tmp_path_factory, llama):
    from inbedder.index import build_index

    root = tmp_path_factory.mktemp("serve")
    write_two_question_output(root / "table", llama)
    for name in QUESTIONS:
        build_index(str(root / "table"), name, str(root / f"index_{name}"))
    return root


def make_app(root, model, **overrides):
    from inbedder.serve.app import create_app
    from inbedder.serve.indexes import IndexSet
    from inbedder.serve.settings import ServeSettings

    settings = ServeSettings((str(root / "index_intent"), str(root / "index_feeling")), reload_every_s=0.2,
                             **overrides)
    return create_app(settings, model, IndexSet(settings.indexes, model))
