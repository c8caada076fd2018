"""Several embedders in one run, and the trained model against an earlier run (the training issue's acceptance).

Scores are comparable only on the same seeded samples, so an earlier run's sizes
are checked against this run's plan before any model work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from inbedder.errors import InBedderError
from inbedder.evaluation.harness import (ROBUSTNESS_SETS, TWO_FACET_SETS, EvalEmbedder, EvalOptions, check_data,
                                         evaluate)

log = logging.getLogger(__name__)


class EvaluationSetupError(InBedderError):
    """The evaluation can't start as asked (missing data, an earlier run on other samples)."""


def load_before(path: str | Path | None, data_dir: Path, options: EvalOptions) -> dict:
    """An earlier run's results, checked to be on this run's samples (a mismatch found after an hour of
    embedding would waste the hour)."""
    try:
        check_data(data_dir, options)
    except FileNotFoundError as exc:
        raise EvaluationSetupError(str(exc)) from None
    if not path:
        return {}
    try:
        before = json.loads(Path(path).read_text())
    except (ValueError, OSError) as exc:
        raise EvaluationSetupError(f"--before {path} is not an `inbedder eval` JSON file: {exc}") from None
    if not isinstance(before, dict) or not before or not all(isinstance(r, dict) for r in before.values()):
        raise EvaluationSetupError(f"--before {path} is not an `inbedder eval` JSON file (no model results)")
    try:
        same_samples(planned_sizes(data_dir, options), next(iter(before.values())))
    except ValueError as exc:
        raise EvaluationSetupError(f"--before {path}: {exc}") from None
    return before


def run_evaluation(embedders: Sequence[EvalEmbedder], data_dir: Path, options: EvalOptions,
                   before: Mapping[str, dict]) -> tuple[dict, str]:
    """Every embedder's results, plus (with `before`) the earlier models and the acceptance checks of the
    first embedder against the earlier run's first model, as markdown."""
    results: dict = {}
    for embedder in embedders:
        log.info("evaluating %s ...", embedder.name)
        results[embedder.name] = evaluate(embedder, data_dir, options)
    checks_md = ""
    if before:
        first, reference = next(iter(results)), next(iter(before))
        checks = acceptance(results[first], before[reference])
        if checks:  # a facets-only run has no harness check (its breadth checks are printed on their own)
            checks_md = "\n" + acceptance_markdown(checks, first, reference)
        results.update(zip(earlier_names(list(results), before), before.values()))
    return results, checks_md


def earlier_names(names: Sequence[str], before: Mapping[str, dict]) -> list[str]:
    """The names `before`'s models get beside this run's: an earlier model of the same name (a default
    retrained since) stays in the tables as the earlier run."""
    return [name if name not in names else f"{name} (earlier run)" for name in before]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def planned_sizes(data_dir: Path, options: EvalOptions) -> dict:
    """The sample sizes a run will score, from file metadata: an earlier run is checked against
    them before any model work, not after it."""
    def size(file: str, wanted: int | None) -> int:
        rows = pq.ParquetFile(Path(data_dir) / file).metadata.num_rows
        return min(rows, wanted) if wanted else rows

    planned: dict = {}
    if "clustering" in options.tests:
        planned["clustering"] = {d: {"rows": size(TWO_FACET_SETS[d].file, options.rows),
                                     "kmeans_seeds": options.kmeans_seeds} for d in options.datasets}
    if "robustness" in options.tests:
        planned["robustness"] = {r: {"rows": size(ROBUSTNESS_SETS[r][0], options.robustness_rows),
                                     "kmeans_seeds": options.kmeans_seeds}
                                 for r in options.robustness_sets}
    if "stsb" in options.tests:
        planned["stsb"] = {"pairs": size("stsb/sts-test.parquet", options.stsb_pairs)}
    if "facets" in options.tests:
        from inbedder.evaluation.facets import FACET_SETS

        planned["facets"] = {s: {"rows": size(FACET_SETS[s].file, options.facet_rows),
                                 "kmeans_seeds": options.kmeans_seeds} for s in options.facet_sets or FACET_SETS}
    return planned


def same_samples(after: Mapping[str, dict], before: Mapping[str, dict]) -> None:
    """Scores are only comparable on the same seeded subsets: refuse otherwise."""
    for test, key in (("clustering", "rows"), ("robustness", "rows"), ("facets", "rows")):
        if test == "facets" and "facets" not in before:
            continue  # a run from before the breadth suite: its models join the other tables only
        for name, r in after.get(test, {}).items():
            other = before.get(test, {}).get(name)
            if other is None or other[key] != r[key]:
                raise ValueError(f"{test} {name}: {r[key]} rows here but "
                                 f"{'none' if other is None else other[key]} in the earlier results; "
                                 "rerun with the same --rows / --robustness-rows")
            here, there = r.get("kmeans_seeds", 1), other.get("kmeans_seeds", 1)  # results older than the option: 1
            if here != there:
                raise ValueError(f"{test} {name}: v-measure averaged over {here} k-means seed(s) here but {there} "
                                 "in the earlier results; rerun with the same --kmeans-seeds")
    if "stsb" in after and before.get("stsb", {}).get("pairs") != after["stsb"]["pairs"]:
        raise ValueError("STS-B: different number of pairs in the earlier results")


def acceptance(after: Mapping[str, dict], before: Mapping[str, dict], min_margin: float = 0.05) -> list[Check]:
    """The training issue's bar: each facet's own question wins by >= min_margin on every
    two-facet set; the own-facet score beats `before` everywhere; correct instructions beat
    incorrect ones by more than the spread between instructions of a group."""
    same_samples(after, before)
    checks = []
    for name, r in after.get("clustering", {}).items():
        for facet, margin in r["diagonal_margin"].items():
            checks.append(Check(f"{name} {facet}: own question wins by >= {min_margin}", margin >= min_margin,
                                f"margin {margin:+.3f}"))
        for facet in r["v_measure"]:
            now, then = r["v_measure"][facet][facet], before["clustering"][name]["v_measure"][facet][facet]
            checks.append(Check(f"{name} {facet}: own-facet v-measure beats the earlier model", now > then,
                                f"{now:.3f} vs {then:.3f}"))
    for name, r in after.get("robustness", {}).items():
        spread = float(np.sqrt((r["std"]["correct"] ** 2 + r["std"]["incorrect"] ** 2) / 2))
        gap = r["correct_minus_incorrect"]
        checks.append(Check(f"{name}: correct instructions beat incorrect ones beyond their spread", gap > spread,
                            f"correct - incorrect {gap:+.3f}, pooled std {spread:.3f}"))
    return checks


def acceptance_markdown(checks: Sequence[Check], after: str, before: str) -> str:
    lines = [f"### Acceptance: {after} against {before}", "", "| check | result | measured |", "|---|---|---|"]
    lines += [f"| {c.name} | {'pass' if c.passed else '**fail**'} | {c.detail} |" for c in checks]
    passed = sum(c.passed for c in checks)
    return "\n".join(lines + ["", f"{passed} of {len(checks)} checks pass.", ""])
