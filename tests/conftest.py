"""Shared fixtures: tiny random models of each family, and the embedded default once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("INBEDDER_CACHE", str(REPO / ".cache" / "inbedder"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
DATA = REPO.parent / "shared" / "data"


QUESTION = "What does the customer want?"


def write_output(path, model, keys: list[str], texts: list[str], *, with_text: bool = True) -> None:
    """An output table as the job writes it, made directly with the engine."""
    import hashlib

    import pyarrow as pa

    from inbedder import lake
    from inbedder.lake import OutputMeta

    vectors = model.encode(texts, QUESTION)
    columns = {"id": keys, lake.KEY_HASH: [hashlib.sha256(t.encode()).hexdigest() for t in texts]}
    if with_text:
        columns["text"] = texts
    data = pa.table(columns | {"q_embedding": pa.array(list(vectors), type=pa.list_(pa.float32())),
                               lake.ERROR: pa.array([None] * len(keys), type=pa.string())})
    meta = OutputMeta(model.model_name, model.fingerprint, model.template, model.dim, "id", {"q": QUESTION})
    output = lake.DeltaOutput(str(path), "id")
    output.merge_rows(data, meta, lake.WaveId("t", "t", output.committed_wave("t") + 1))


@pytest.fixture(scope="session")
def default_dir() -> Path:
    from inbedder.engine.gguf import converted_dir, default_gguf_path

    return converted_dir(default_gguf_path())


def _save_tiny(kind: str, out: Path, default_dir: Path) -> Path:
    import torch
    from transformers import (AutoTokenizer, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM,
                              RobertaConfig, RobertaForMaskedLM)

    from inbedder.evaluation.baselines import minilm_dir

    torch.manual_seed(0)
    if kind == "roberta":
        tok = AutoTokenizer.from_pretrained(minilm_dir())  # WordPiece with [MASK]; the model is RoBERTa-shaped
        config = RobertaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=128, max_position_embeddings=600, pad_token_id=tok.pad_token_id)
        model = RobertaForMaskedLM(config)
    else:
        tok = AutoTokenizer.from_pretrained(default_dir)
        common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.bos_token_id)
        if kind == "llama":
            config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=1024, **common)
            model = LlamaForCausalLM(config)
        else:  # OPT-350m shape: post-layer-norm and a projection down to word_embed_proj_dim
            config = OPTConfig(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                               word_embed_proj_dim=32, do_layer_norm_before=False, max_position_embeddings=1024,
                               **common)
            model = OPTForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory, default_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {k: _save_tiny(k, root / k, default_dir) for k in ("llama", "opt", "roberta")}


@pytest.fixture(scope="session", params=["llama", "opt", "roberta"])
def tiny(request, tiny_dirs):
    from inbedder import InBedder

    return InBedder.from_pretrained(str(tiny_dirs[request.param]), max_length=96, token_budget=300)


@pytest.fixture(scope="session")
def llama(tiny_dirs):
    """The tiny LLaMA-shaped model, loaded once (full max_length, default budget)."""
    from inbedder import InBedder

    return InBedder.from_pretrained(str(tiny_dirs["llama"]))


def output_table(path, model, texts: list[str]):
    """An output table of these texts under keys k0..kN, as the job writes it."""
    write_output(path, model, [f"k{i}" for i in range(len(texts))], texts)
    return path


@pytest.fixture(scope="session")
def default_model():
    from inbedder import InBedder

    return InBedder.from_pretrained(num_threads=2)


@pytest.fixture(scope="session")
def banking_texts() -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(REPO / "inbedder" / "data" / "banking77_sample.parquet").column("text").to_pylist()


@pytest.fixture(scope="session")
def xquad_contexts() -> list[str]:
    import pyarrow.parquet as pq

    path = DATA / "xquad_en" / "xquad_en.parquet"
    if not path.exists():
        pytest.skip(f"{path} not present")
    return list(dict.fromkeys(pq.read_table(path).column("context").to_pylist()))


@pytest.fixture(scope="session")
def cluster():
    """One local Spark session and one loopback Ray cluster for every job test."""
    import ray

    from inbedder.job.settings import load_config
    from inbedder.job.cluster import start_spark
    from inbedder.job.local_cluster import start_local_ray

    config = load_config(base={"input.path": "x", "input.key": "k", "input.text": "t", "instructions": {"q": "?"},
                               "output.path": "y"})
    spark, _ = start_spark(config)
    start_local_ray(object_store_mb=256, namespace="inbedder", num_cpus=2)
    yield spark
    ray.shutdown()
    spark.stop()


@pytest.fixture(scope="session")
def sample_rows():
    import pyarrow.parquet as pq

    return pq.read_table(REPO / "inbedder" / "data" / "banking77_sample.parquet").slice(0, 240)
