"""Training benchmark: optimizer-step time with length-grouped batches and bf16 autocast vs. the plain loop.

Every number is a ratio of two measurements taken in this one run on this machine,
on the same training rows (the coarse-facet training set by default) and the
same model (the embedded default's base with a fresh LoRA adapter).

    inbedder train-data --out out/train-data-coarse --per-source 800 --per-label-question 700 --coarse-facets
    python bench/training.py --rows out/train-data-coarse/train.parquet --out bench/results/training.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from inbedder.engine.hardware import machine_record
from inbedder.engine.loading import ZERO_SHOT_MODEL, load_model
from inbedder.engine.pooling import Pooling
from inbedder.training.trainer import (TrainConfig, answer_loss, batches_for_step, collate, encode_example,
                                       prepare_model, read_rows)

VARIANTS = {  # name -> (config fields changed from the shipped run's (jobs/train_smollm2.yaml), answer-only logits)
    "plain fp32": ({}, False),
    "grouped fp32": ({"group_by_length": True}, False),
    "grouped bf16": ({"group_by_length": True, "bf16": True}, False),
    "grouped fp32, answer-only logits": ({"group_by_length": True}, True),
    "grouped bf16, answer-only logits": ({"group_by_length": True, "bf16": True}, True),
}


def full_logits_loss(model, batch, bf16: bool) -> torch.Tensor:
    """The loss as the model computes it: logits at every position (how training ran before answer_loss)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(**batch).loss


def measure(model, examples, lengths, pad_id: int, config: TrainConfig, steps: int, answer_only: bool,
            pooling: Pooling) -> dict:
    """Forward+backward+step over the first `steps` optimizer steps of the config's epoch-0 order."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.0)  # lr 0: timing only, the weights stay as they are
    padded = real = 0
    started = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        for b in batches_for_step(step, len(examples), config, lengths):
            batch = collate([examples[int(i)] for i in b], pad_id)
            padded += batch["input_ids"].numel()
            real += int(batch["attention_mask"].sum())
            loss = (answer_loss(model, batch, config.bf16, pooling) if answer_only
                    else full_logits_loss(model, batch, config.bf16))
            loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    return {"s_per_step": seconds / steps, "padding": 1 - real / padded, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="out/train-data-coarse/train.parquet")
    parser.add_argument("--config", default="jobs/train_smollm2.yaml", help="the run whose settings are timed")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out")
    args = parser.parse_args()

    import yaml

    settings = yaml.safe_load(Path(args.config).read_text()) | {"train": args.rows, "validation": None,
                                                                "progress": False}
    base = TrainConfig(**settings)
    loaded = load_model(base.model or ZERO_SHOT_MODEL, dtype="float32", device="cpu")
    rows = read_rows(args.rows).select(["input", "instruction", "answer"]).to_pylist()
    examples = [encode_example(loaded.tokenizer, loaded.pooling, r["input"], r["instruction"], r["answer"], base)
                for r in rows]
    lengths = np.array([len(e.input_ids) for e in examples])
    model = prepare_model(loaded.model, base, loaded.pooling)
    model.train()
    pad_id = int(loaded.tokenizer.pad_token_id)
    measure(model, examples, lengths, pad_id, base, 1, True, loaded.pooling)  # warm-up: first-call allocations
    results = {name: measure(model, examples, lengths, pad_id, base.model_copy(update=change), args.steps,
                             answer_only, loaded.pooling)
               for name, (change, answer_only) in VARIANTS.items()}
    plain = results["plain fp32"]["s_per_step"]
    for name, r in results.items():
        r["speedup_vs_plain"] = plain / r["s_per_step"]
        print(f"{name:32s} {r['s_per_step']:6.2f} s/step  padding {r['padding']:5.1%}  "
              f"x{r['speedup_vs_plain']:.2f} vs plain")
    report = {"machine": {**machine_record(), "cores": os.cpu_count()},
              "torch_threads": torch.get_num_threads(), "rows": args.rows, "batch_size": base.batch_size,
              "max_length": base.max_length, "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
