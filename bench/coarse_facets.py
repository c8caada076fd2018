"""Why does the coarse question lose its own facet? A diagnosis on the two-facet evaluation sets.

For each model, on a seeded sample of each set (the harness's sampler):
- v-measure of k-means on the coarse facet under the harness's hinted coarse question
  ("..., such as a, b or c?"), under the same question without the hint, and under
  the intent question (the one that wins today);
- how well the model's own greedy answers to the hinted question partition the
  texts: v-measure of the answer strings themselves against the coarse labels, and
  the most frequent answers. High answer v-measure with low vector v-measure means
  the model knows the category but its state before answering holds more than it.

    python bench/coarse_facets.py --adapter out/train/smollm2-lora-coarse/adapter --out bench/results/coarse_facets.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from sklearn.metrics import v_measure_score

from inbedder import InBedder
from inbedder.evaluation.harness import TWO_FACET_SETS, sample_rows, v_measure

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def unhinted(question: str) -> str:
    return re.sub(r",\s*such as .*\?$", "?", question)


def diagnose(model: InBedder, dataset: str, rows: int, seed: int = 0) -> dict:
    spec = TWO_FACET_SETS[dataset]
    (coarse, (coarse_col, hinted)), = [(f, v) for f, v in spec.facets.items() if f != "intent"]
    intent_q = spec.facets["intent"][1]
    table = sample_rows(pq.read_table(DATA / spec.file), rows, seed)
    texts, labels = table.column("text").to_pylist(), table.column(coarse_col).to_pylist()
    questions = {"hinted": hinted, "unhinted": unhinted(hinted), "intent": intent_q}
    vectors = model.encode(texts, questions)
    answers = [a.strip().lower() for a in model.answer(texts, hinted, max_new_tokens=4)]
    return {"rows": len(texts), "facet": coarse, "questions": questions,
            "vector_v_measure": {k: v_measure(vectors[k], labels, seed) for k in questions},
            "answer_v_measure": float(v_measure_score(labels, answers)),
            "distinct_answers": len(set(answers)), "labels": len(set(labels)),
            "top_answers": Counter(answers).most_common(12)}


def models_from_cli(description: str, datasets: list[str], rows: int,
                    extra: dict[str, dict] | None = None) -> tuple[argparse.Namespace, list[InBedder]]:
    """The diagnosis scripts' shared command line: the embedded default plus any --adapter runs."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", action="append", default=[], help="also diagnose this trained adapter")
    parser.add_argument("--dataset", action="append", choices=list(TWO_FACET_SETS), default=None)
    parser.add_argument("--rows", type=int, default=rows)
    parser.add_argument("--out")
    for flag, options in (extra or {}).items():
        parser.add_argument(flag, **options)
    args = parser.parse_args()
    args.dataset = args.dataset or datasets
    models = [InBedder.from_pretrained(num_threads=2)] + [InBedder.from_pretrained(adapter=a, num_threads=2)
                                                          for a in args.adapter]
    return args, models


def main() -> None:
    args, models = models_from_cli(__doc__, ["massive", "mtop"], 500)
    report = {}
    for model in models:
        report[model.model_name] = {d: diagnose(model, d, args.rows) for d in args.dataset}
        for d, r in report[model.model_name].items():
            v = r["vector_v_measure"]
            print(f"{model.model_name[-40:]:40s} {d:8s} {r['facet']:8s} vectors: hinted {v['hinted']:.3f} "
                  f"unhinted {v['unhinted']:.3f} intent-q {v['intent']:.3f} | answers {r['answer_v_measure']:.3f} "
                  f"({r['distinct_answers']} distinct for {r['labels']} labels) "
                  f"{', '.join(a for a, _ in r['top_answers'][:6])}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
