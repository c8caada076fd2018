"""GPU readiness: the engine on CUDA against the paper's reference path, in one run on one GPU.

    python bench/gpu.py --out bench/results/gpu.json [--model smollm2-inbedder] [--rows 4000]

Records, side by side on the same texts:
- vectors: min cosine of the engine (fp32 and bf16) against the reference path in fp32;
- speed: rows/s of the reference path (`generate(output_hidden_states=True)`, the
  paper repo's batch 64 and 20 new tokens) and of the engine over a `token_budget`
  sweep, as ratios to the reference;
- the GPU, CUDA and torch versions, and the host CPU's flags.
Without CUDA it says so and exits 0 (nothing is measured, nothing is written but
the reason), so the same command runs unchanged the day a GPU is there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from inbedder.engine import InBedder
from inbedder.engine.hardware import machine_record
from inbedder.engine.reference import reference_encode

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
QUESTION = "What does the customer want the bank to do?"
PASSAGE_QUESTION = "What is this passage about?"
BUDGETS = (4096, 8192, 16384, 32768, 65536)
REFERENCE_BATCH, REFERENCE_NEW_TOKENS = 64, 20  # the paper repo's released configs


def texts_for(rows: int) -> tuple[list[str], list[str]]:
    """Short requests (Banking77 test) and long passages (XQuAD contexts): both ends of the length range."""
    short = pq.read_table(DATA / "banking77" / "test.parquet").column("text").to_pylist()[:rows]
    contexts = list(dict.fromkeys(pq.read_table(DATA / "xquad_en" / "xquad_en.parquet").column("context")
                                  .to_pylist()))[: max(1, rows // 8)]
    return short, contexts


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def timed(fn, *args, **kwargs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the embedded default (smollm2-inbedder)")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing measured. "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of torch.")
        return 0
    short, passages = texts_for(args.rows)
    fp32 = InBedder.from_pretrained(args.model, device="cuda", dtype="float32")
    bf16 = InBedder.from_pretrained(args.model, device="cuda", dtype="bfloat16")
    result: dict = {"machine": {**machine_record(), "gpu": torch.cuda.get_device_name(0),
                                "cuda": torch.version.cuda, "torch": torch.__version__},
                    "model": fp32.model_name, "fingerprint": fp32.fingerprint, "rows": len(short),
                    "passages": len(passages)}
    for name, texts, question in (("short", short, QUESTION), ("passages", passages, PASSAGE_QUESTION)):
        fp32.encode(texts[:64], question)  # warm-up: kernels, allocator
        reference, t_ref = timed(reference_encode, fp32.loaded, texts, question, batch_size=REFERENCE_BATCH,
                                 max_new_tokens=REFERENCE_NEW_TOKENS)
        engine32, t32 = timed(fp32.encode, texts, question)
        engine16, t16 = timed(bf16.encode, texts, question)
        sweep = {}
        for budget in BUDGETS:
            bf16.token_budget = budget
            _, seconds = timed(bf16.encode, texts, question)
            sweep[str(budget)] = {"rows_per_s": len(texts) / seconds, "vs_reference": t_ref / seconds}
        result[name] = {
            "reference_rows_per_s": len(texts) / t_ref,
            "engine_fp32": {"rows_per_s": len(texts) / t32, "vs_reference": t_ref / t32,
                            "min_cosine_vs_reference": min_cosine(engine32, reference)},
            "engine_bf16": {"rows_per_s": len(texts) / t16, "vs_reference": t_ref / t16,
                            "min_cosine_vs_reference": min_cosine(engine16, reference)},
            "bf16_token_budget_sweep": sweep,
        }
        print(f"{name}: reference {len(texts) / t_ref:.0f} rows/s; engine fp32 x{t_ref / t32:.1f} "
              f"(cos {result[name]['engine_fp32']['min_cosine_vs_reference']:.5f}), bf16 x{t_ref / t16:.1f} "
              f"(cos {result[name]['engine_bf16']['min_cosine_vs_reference']:.4f}); budget sweep "
              + ", ".join(f"{b}: x{v['vs_reference']:.1f}" for b, v in sweep.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
