"""Averaging LoRA adapters trained from the same start (a "model soup", Wortsman et al. 2022), and storing one small.

Two runs from one checkpoint that trade one skill for another (here: clustering margins against
STS-B) can be blended without training: the weighted mean of their weight updates. For LoRA the
mean is exact in adapter form: stacking the adapters' A matrices and their weighted, scaled B
matrices gives one adapter of the summed rank whose B @ A is sum_i w_i * (alpha_i / r_i) * B_i @ A_i.

A soup's rank (and size) is the sum of its ingredients'. `compact_adapter` stores an adapter at a lower
rank (each layer's update truncated by SVD, the energy kept recorded) and in half precision.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from inbedder.engine.loading import ADAPTER_RECORD, is_plain_lora, lora_scale
from inbedder.errors import TrainingError
from inbedder.fs import replace_folder

_WEIGHTS = "adapter_model.safetensors"
_CONFIG = "adapter_config.json"


def average_adapters(folders: list[Path], weights: list[float], out: Path) -> Path:
    """Write to `out` one LoRA adapter whose update is the weighted sum of the given adapters' updates.

    The adapters must be plain LoRA on the same base weights and modules; `weights` must be positive and
    sum to 1. The record names every ingredient with its weight and record, so the blend is reproducible."""
    import torch
    from safetensors.torch import load_file

    if len(folders) < 2 or len(folders) != len(weights):
        raise TrainingError("a soup needs two adapters or more, and one weight per adapter")
    if any(w <= 0 for w in weights) or not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise TrainingError(f"soup weights must be positive and sum to 1 (got {', '.join(map(str, weights))})")
    configs, records, tensors = [], [], []
    for folder in folders:
        folder = Path(folder)
        if not all((folder / f).is_file() for f in (_CONFIG, _WEIGHTS, ADAPTER_RECORD)):
            raise TrainingError(f"{folder} is not a LoRA adapter exported by `inbedder train` "
                                f"(needs {_CONFIG}, {_WEIGHTS} and {ADAPTER_RECORD})")
        config = json.loads((folder / _CONFIG).read_text())
        if not is_plain_lora(config):
            raise TrainingError(f"{folder}: only plain LoRA adapters can be averaged exactly")
        configs.append(config)
        records.append(json.loads((folder / ADAPTER_RECORD).read_text()))
        tensors.append(load_file(folder / _WEIGHTS))
    if len({r["base_weights"] for r in records}) != 1:
        raise TrainingError("the adapters were trained on different base weights: their updates can't be added")
    if len({tuple(sorted(c["target_modules"])) for c in configs}) != 1 or len({frozenset(t) for t in tensors}) != 1:
        raise TrainingError("the adapters adapt different modules: average adapters of the same training set-up")

    stacked: dict[str, torch.Tensor] = {}
    for name in tensors[0]:
        if name.endswith("lora_A.weight"):
            stacked[name] = torch.cat([t[name].float() for t in tensors], dim=0)
        elif name.endswith("lora_B.weight"):
            stacked[name] = torch.cat([w * lora_scale(c) * t[name].float()
                                       for w, c, t in zip(weights, configs, tensors, strict=True)], dim=1)
        else:
            raise TrainingError(f"unexpected tensor {name!r} in a LoRA adapter")
    rank = sum(int(c["r"]) for c in configs)
    # scale 1 (alpha = r, not rank-stabilised): the B blocks carry each adapter's own scale
    config = dict(configs[0], r=rank, lora_alpha=rank, use_rslora=False)
    record = {key: records[0][key] for key in ("base_model", "base_weights")} | {
        # steps: the ingredients' own steps added up (each ingredient's record keeps its own count)
        "method": "lora-soup", "steps": sum(int(r.get("steps") or 0) for r in records),
        "soup": [{"adapter": str(f), "weight": w, "record": r} for f, w, r in zip(folders, weights, records,
                                                                                  strict=True)]}

    def write(fresh: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in stacked.items()}, fresh / _WEIGHTS)
        (fresh / _CONFIG).write_text(json.dumps(config, indent=2))
        (fresh / ADAPTER_RECORD).write_text(json.dumps(record, indent=1))

    replace_folder(Path(out), write)
    return Path(out)


STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def compact_adapter(folder: Path, out: Path, rank: int | None = None, dtype: str = "float32") -> dict:
    """Write `folder`'s adapter to `out` at `rank` (each layer's update B @ A truncated to its top singular
    directions; None keeps the rank) stored in `dtype`. Returns what was kept: the smallest and the mean share
    of each layer's update energy (squared Frobenius norm), also written into the record."""
    import torch
    from safetensors.torch import load_file

    folder, out = Path(folder), Path(out)
    if dtype not in STORAGE_DTYPES:
        raise TrainingError(f"dtype {dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
    if not all((folder / f).is_file() for f in (_CONFIG, _WEIGHTS, ADAPTER_RECORD)):
        raise TrainingError(f"{folder} is not a LoRA adapter exported by `inbedder train` or `inbedder soup`")
    config = json.loads((folder / _CONFIG).read_text())
    if not is_plain_lora(config):
        raise TrainingError(f"{folder}: only plain LoRA adapters can be compacted exactly")
    old_rank = int(config["r"])
    rank = old_rank if rank is None else rank
    if not 1 <= rank <= old_rank:
        raise TrainingError(f"rank {rank}: give a rank between 1 and the adapter's own ({old_rank})")
    tensors, scale = load_file(folder / _WEIGHTS), lora_scale(config)
    stored, energy = {}, []
    for a_name in sorted(n for n in tensors if n.endswith("lora_A.weight")):
        b_name = a_name.replace("lora_A.weight", "lora_B.weight")
        a, b = tensors[a_name].double(), scale * tensors[b_name].double()
        # B @ A = Qb Rb (Qa Ra)^T: the SVD of the small Rb Ra^T gives the update's singular directions
        qb, rb = torch.linalg.qr(b)
        qa, ra = torch.linalg.qr(a.T)
        u, sigma, vt = torch.linalg.svd(rb @ ra.T)
        total = float((sigma ** 2).sum())
        energy.append(float((sigma[:rank] ** 2).sum()) / total if total > 0 else 1.0)
        root = sigma[:rank].sqrt()
        stored[b_name] = ((qb @ u[:, :rank]) * root).to(getattr(torch, dtype)).contiguous()
        stored[a_name] = (root[:, None] * (vt[:rank] @ qa.T)).to(getattr(torch, dtype)).contiguous()
    kept = {"rank": rank, "from_rank": old_rank, "dtype": dtype,
            "energy_kept_min": round(min(energy), 6), "energy_kept_mean": round(sum(energy) / len(energy), 6)}
    record = json.loads((folder / ADAPTER_RECORD).read_text()) | {"stored": kept}
    new_config = dict(config, r=rank, lora_alpha=rank, use_rslora=False)  # scale 1: B carries the old scale

    def write(fresh: Path) -> None:
        from safetensors.torch import save_file

        save_file(stored, fresh / _WEIGHTS)
        (fresh / _CONFIG).write_text(json.dumps(new_config, indent=2))
        (fresh / ADAPTER_RECORD).write_text(json.dumps(record, indent=1))

    replace_folder(out, write)
    return kept
