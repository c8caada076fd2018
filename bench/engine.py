"""Engine benchmark: speed vs. the paper's reference path, FLOP utilisation, multi-instruction cost.

Every number is a ratio of two measurements taken in this one run on this machine.

    python bench/engine.py --out bench/results/engine.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from inbedder.engine.hardware import machine_record
from inbedder.engine import InBedder
from inbedder.engine.reference import reference_encode

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BANKING_Q = "What does the customer want the bank to do?"
XQUAD_QS = ["What is this passage about?", "Which people are mentioned?", "Where does this take place?",
            "What is the tone of the writing?"]
REFERENCE_BATCH, REFERENCE_NEW_TOKENS = 64, 20  # the paper repo's released configs


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(timed(torch.matmul, a, b)[1] for _ in range(reps))
    return 2 * n**3 / best


def useful_flops(model: InBedder, seqs: list[list[int]], computed_real_tokens: int) -> float:
    """Linear layers for every real token computed, plus causal attention over each prompt."""
    base = model.loaded.model.base_model
    linear = sum(m.weight.numel() for m in base.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.loaded.model.config
    attn_width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    attention = sum(4 * cfg.num_hidden_layers * attn_width * len(s) * (len(s) + 1) / 2 for s in seqs)
    return 2 * linear * computed_real_tokens + attention


def load_texts(rows: int, contexts: int) -> tuple[list[str], list[str]]:
    banking_path = DATA / "banking77" / "test.parquet"
    if not banking_path.exists():
        banking_path = REPO / "inbedder" / "data" / "banking77_sample.parquet"
    banking = pq.read_table(banking_path).column("text").to_pylist()[:rows]
    # unique contexts: XQuAD repeats each context once per question, and identical prompts
    # would share their computation in the engine but not in the reference
    all_contexts = pq.read_table(DATA / "xquad_en" / "xquad_en.parquet").column("context").to_pylist()
    xquad = list(dict.fromkeys(all_contexts))[:contexts]
    return banking, xquad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=512, help="Banking77 texts")
    ap.add_argument("--contexts", type=int, default=256, help="unique XQuAD contexts (the file has 240)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    banking, xquad = load_texts(args.rows, args.contexts)
    models = {dtype: InBedder.from_pretrained(dtype=dtype) for dtype in ("float32", "bfloat16")}
    ref_model = models["float32"].loaded
    results: dict[str, dict] = {}
    for corpus, texts, question in [("banking77", banking, BANKING_Q), ("xquad", xquad, XQUAD_QS[0])]:
        for m in models.values():
            m.encode(texts[:8], question)  # warm-up
        reference_encode(ref_model, texts[:4], question, batch_size=4, max_new_tokens=2)
        ref, ref_s = timed(reference_encode, ref_model, texts, question, batch_size=REFERENCE_BATCH,
                           max_new_tokens=REFERENCE_NEW_TOKENS)
        minimal, minimal_s = timed(reference_encode, ref_model, texts, question, batch_size=REFERENCE_BATCH)
        row = {"rows": len(texts), "reference_rows_per_s": len(texts) / ref_s,
               "reference_1_token_rows_per_s": len(texts) / minimal_s, "mean_prompt_tokens": None}
        for name, m in models.items():
            result, secs = timed(m.embed, texts, {"q": question})
            seqs = m.prompts.tokenize(texts, question)
            row["mean_prompt_tokens"] = float(np.mean([len(s) for s in seqs]))
            row[name] = {
                "rows_per_s": len(texts) / secs,
                "speedup_vs_reference": ref_s / secs,
                "speedup_vs_1_token_reference": minimal_s / secs,
                "cos_min_vs_fp32_reference": cosine_min(result.vectors["q"], ref),
                "padding_share": result.stats.padding_share,
                "useful_flops_per_s": useful_flops(m, seqs, result.stats.real_tokens) / secs,
            }
        results[corpus] = row
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    one, one_s = timed(models["float32"].encode, xquad, XQUAD_QS[0])
    four, four_s = timed(models["float32"].encode, xquad, {f"q{i}": q for i, q in enumerate(XQUAD_QS)})
    report = {
        "p1_speedup_vs_reference": {c: {d: results[c][d]["speedup_vs_reference"] for d in models} for c in results},
        "p2_flop_utilization": {d: results["banking77"][d]["useful_flops_per_s"] / peaks[d] for d in models},
        "p4_four_vs_one_instruction": four_s / one_s,
        "p4_four_equals_separate_cos_min": cosine_min(four["q0"], one),
        "matmul_peak_flops_per_s": peaks,
        "details": results,
        "reference": {"batch_size": REFERENCE_BATCH, "max_new_tokens": REFERENCE_NEW_TOKENS, "order": "input"},
        "machine": {**machine_record(), "threads": args.threads,
                    "torch": torch.__version__, "device": "cpu"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{'corpus':10} {'dtype':9} {'rows/s':>8} {'ref rows/s':>10} {'speedup':>8} {'vs 1-tok ref':>12} "
          f"{'cos min':>9} {'padding':>8} {'FLOP util':>9}")
    for c, row in results.items():
        for d in models:
            r = row[d]
            print(f"{c:10} {d:9} {r['rows_per_s']:8.1f} {row['reference_rows_per_s']:10.1f} "
                  f"{r['speedup_vs_reference']:8.2f} {r['speedup_vs_1_token_reference']:12.2f} "
                  f"{r['cos_min_vs_fp32_reference']:9.6f} {r['padding_share']:8.3f} "
                  f"{r['useful_flops_per_s'] / peaks[d]:9.2f}")
    print(f"p4: 4 instructions / 1 instruction on {len(xquad)} XQuAD contexts = "
          f"{report['p4_four_vs_one_instruction']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
