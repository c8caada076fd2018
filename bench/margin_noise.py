"""How much of a two-facet margin is k-means seed noise? The harness scores one seed; this scores several.

Embeds the harness's seeded sample once per model, then runs k-means with several
seeds and prints each facet's margin (own question minus the other question) as
mean ± std over seeds, beside the seed-0 value the harness reports.

    python bench/margin_noise.py --dataset clinc --adapter out/train/smollm2-lora-coarse/adapter \
        --out bench/results/margin_noise.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from coarse_facets import DATA, models_from_cli  # bench/ is on the path when run as a script
from inbedder import InBedder
from inbedder.evaluation.harness import TWO_FACET_SETS, diagonal_margins, sample_rows, v_measure


def margins_over_seeds(model: InBedder, dataset: str, rows: int, seeds: int) -> dict:
    spec = TWO_FACET_SETS[dataset]
    table = sample_rows(pq.read_table(DATA / spec.file), rows, 0)  # the harness's sample (seed 0)
    texts = table.column("text").to_pylist()
    labels = {f: table.column(col).to_pylist() for f, (col, _) in spec.facets.items()}
    vectors = model.encode(texts, {f: q for f, (_, q) in spec.facets.items()})
    per_seed = [diagonal_margins({asked: {scored: v_measure(vectors[asked], labels[scored], seed)
                                          for scored in labels} for asked in labels})
                for seed in range(seeds)]
    return {f: {"seed0": per_seed[0][f], "mean": float(np.mean([m[f] for m in per_seed])),
                "std": float(np.std([m[f] for m in per_seed])), "all": [m[f] for m in per_seed]}
            for f in labels}


def main() -> None:
    args, models = models_from_cli(__doc__, ["clinc"], 1500, {"--seeds": {"type": int, "default": 8}})
    report = {}
    for model in models:
        report[model.model_name] = {d: margins_over_seeds(model, d, args.rows, args.seeds)
                                    for d in args.dataset}
        for d, facets in report[model.model_name].items():
            print(f"{model.model_name[-40:]:40s} {d:8s} " + "  ".join(
                f"{f}: seed0 {m['seed0']:+.3f}, {m['mean']:+.3f} ± {m['std']:.3f}" for f, m in facets.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
