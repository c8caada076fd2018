"""The breadth suite: does a question about a facet group texts by that facet, on kinds of facet far apart?

The harness's six facets are all intent / domain of short requests; a default
chosen on them is tuned to one family (issue 28). Here 14 labelled sets give 23
facets of many kinds (topic, attitude, style, judgement, ...). Per facet:
v-measure of k-means (k = its labels) under its own question and under every
other question of its set (a generic "what is it about?" question for a set with
one facet); the own-question margin is own minus the best other. A model's
**breadth score** is the mean margin over the held-out facets, with the counts of
facets whose margin is >= 0.05 and whose own-question score reaches
all-MiniLM-L6-v2 with the question prepended (run beside it).

Sets a shipped adapter may train on (their licence allows it) are scored apart:
`trained_on` names them, and the breadth score leaves them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from inbedder.evaluation.harness import EvalEmbedder, sample_rows, v_measure

GENERIC_QUESTION = "What is this text about?"
GENERIC = "generic"          # the other question of a single-facet set
MIN_MARGIN = 0.05
MINILM_Q = "all-MiniLM-L6-v2 + question"
MINILM = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Facet:
    column: str
    question: str
    family: str


@dataclass(frozen=True)
class FacetSet:
    file: str
    facets: dict[str, Facet]


def _set(file: str, **facets: tuple[str, str]) -> FacetSet:
    return FacetSet(f"facets/{file}.parquet",
                    {name: Facet(name, question, family) for name, (question, family) in facets.items()})


# the questions are facets/README.md's "natural question per facet"; families group facets of one kind
FACET_SETS: dict[str, FacetSet] = {
    "multidomain_sentiment": _set(
        "multidomain_sentiment",
        product_domain=("What kind of product is being reviewed?", "content"),
        sentiment=("How does the reviewer feel about the product?", "attitude"),
        star_rating=("How many stars did the reviewer give the product?", "attitude")),
    "airline_tweets": _set(
        "airline_tweets",
        airline=("Which airline is the tweet addressed to?", "content"),
        sentiment=("How does the customer feel about the airline?", "attitude"),
        negative_reason=("What is the customer complaining about?", "content")),
    "politeness_requests": _set(
        "politeness_requests",
        politeness=("How polite is this request?", "style"),
        platform=("Was this request made on Wikipedia or on Stack Exchange?", "content"),
        community=("In which online community was this request made?", "content")),
    "shakespeare_modern_pairs": _set(
        "shakespeare_modern_pairs",
        register=("Is this written in Shakespeare's original English or in modern English?", "style"),
        play=("Which Shakespeare play is this line from?", "content")),
    "trec_question_type": _set(
        "trec_question_type", question_type=("What kind of answer is the question asking for?", "question type")),
    "liar_statements": _set(
        "liar_statements",
        veracity=("How truthful is this statement?", "judgement"),
        speaker_party=("Which party is the speaker affiliated with?", "judgement"),
        subject=("What policy subject is the statement about?", "content")),
    "headline_sarcasm": _set(
        "headline_sarcasm", sarcasm=("Is this headline sarcastic satire or a genuine news headline?", "judgement")),
    "hate_offensive_tweets": _set(
        "hate_offensive_tweets",
        hate_offensive=("Is the tweet hate speech, offensive but not hateful, or neither?", "judgement")),
    "tweeteval_emotion": _set(
        "tweeteval_emotion", emotion=("Which emotion does the author of the tweet express?", "attitude")),
    "tweeteval_sentiment": _set(
        "tweeteval_sentiment", sentiment=("Is the sentiment of the tweet positive, neutral or negative?", "attitude")),
    "tweeteval_irony": _set("tweeteval_irony", irony=("Is the tweet meant ironically?", "judgement")),
    "tweeteval_offensive": _set("tweeteval_offensive", offensive=("Is the tweet offensive?", "judgement")),
    "tweeteval_hate": _set("tweeteval_hate", hate=("Does the tweet express hate towards immigrants or women?",
                                                   "judgement")),
    "ag_news_topic": _set("ag_news_topic", topic=("What is the news article about?", "content")),
}
# facets not about content: the "own >= MiniLM + question" check covers these
NOT_CONTENT_FAMILIES = ("attitude", "style", "judgement", "question type")


def questions_of(spec: FacetSet) -> dict[str, str]:
    """Every question a set is embedded under: one per facet, plus the generic one for a single facet."""
    questions = {name: f.question for name, f in spec.facets.items()}
    if len(questions) == 1:
        questions[GENERIC] = GENERIC_QUESTION
    return questions


def facets_eval(embedder: EvalEmbedder, data_dir: Path, sets: Sequence[str], rows: int | None = 500, seed: int = 0,
                seeds: int = 1, trained_on: Sequence[str] = ()) -> dict[str, dict]:
    """Per set: v_measure[question asked][facet scored], own-question margins, and whether training saw it."""
    results = {}
    for name in sets:
        spec = FACET_SETS[name]
        table = sample_rows(pq.read_table(Path(data_dir) / spec.file), rows, seed)
        texts = table.column("text").to_pylist()
        questions = questions_of(spec)
        vectors = embedder.encode_many(texts, questions)
        labels = {facet: table.column(f.column).to_pylist() for facet, f in spec.facets.items()}
        scores = {asked: {facet: v_measure(vectors[asked], labels[facet], seed, seeds) for facet in labels}
                  for asked in questions}
        margins = {facet: scores[facet][facet] - max(scores[o][facet] for o in questions if o != facet)
                   for facet in labels}
        results[name] = {"rows": len(texts), "kmeans_seeds": seeds, "questions": questions, "v_measure": scores,
                         "diagonal_margin": margins, "trained_on": name in trained_on,
                         "families": {facet: f.family for facet, f in spec.facets.items()}}
    return results


@dataclass(frozen=True)
class FacetScore:
    set: str
    facet: str
    family: str
    own: float
    margin: float
    trained_on: bool


def facet_scores(facets: Mapping[str, dict]) -> list[FacetScore]:
    """One model's `facets_eval` output as one row per facet."""
    return [FacetScore(name, facet, r["families"][facet], r["v_measure"][facet][facet], r["diagonal_margin"][facet],
                       r["trained_on"])
            for name, r in facets.items() for facet in r["diagonal_margin"]]


@dataclass(frozen=True)
class Breadth:
    facets: int                 # held-out facets scored
    mean_margin: float          # the breadth score
    margins_at_least: int       # facets with margin >= MIN_MARGIN
    reaches_minilm_q: int | None  # facets whose own score >= MiniLM + question's (None: no baseline in the run)


def breadth(scores: Sequence[FacetScore], minilm_q: Sequence[FacetScore] | None = None,
            trained_on: bool = False) -> Breadth:
    """The breadth score over the held-out facets (or, with `trained_on`, over those training saw)."""
    mine = [s for s in scores if s.trained_on == trained_on]
    base = {(s.set, s.facet): s.own for s in minilm_q or ()}
    reaches = (sum(s.own >= base[(s.set, s.facet)] for s in mine if (s.set, s.facet) in base)
               if minilm_q is not None else None)
    return Breadth(len(mine), float(np.mean([s.margin for s in mine])) if mine else float("nan"),
                   sum(s.margin >= MIN_MARGIN for s in mine), reaches)


def breadth_table(results: Mapping[str, dict]) -> dict[str, dict[str, Breadth]]:
    """{model: {"held-out": Breadth, "trained-on": Breadth}} for every model with facet results."""
    with_facets = {m: facet_scores(r["facets"]) for m, r in results.items() if r.get("facets")}
    baseline = with_facets.get(MINILM_Q)
    return {m: {"held-out": breadth(s, baseline), "trained-on": breadth(s, baseline, trained_on=True)}
            for m, s in with_facets.items()}


@dataclass(frozen=True)
class BreadthCheck:
    name: str
    passed: bool
    measured: str


def breadth_acceptance(results: Mapping[str, dict], candidate: str, references: Sequence[str],
                       max_drop: float = 0.03, minilm_floor: float = 0.05, reachable: float = 0.1,
                       share: float = 2 / 3) -> list[BreadthCheck]:
    """Issue 28's acceptance for `candidate` against `references` (e.g. v1 and v2), all measured in one run
    and all on the held-out sets: a breadth score above each reference; no facet's own-question v-measure more
    than `max_drop` below the best reference's; own >= MiniLM + question on every facet not about content
    where MiniLM + question reaches `minilm_floor`; margin >= 0.05 on `share` of the facets where any model
    reaches `reachable`."""
    scores = {m: {(s.set, s.facet): s for s in facet_scores(r["facets"]) if not s.trained_on}
              for m, r in results.items() if r.get("facets")}
    missing = [m for m in (candidate, *references) if m not in scores]
    if missing:
        raise ValueError(f"no facet results for {', '.join(missing)}")
    mine, table = scores[candidate], breadth_table(results)
    checks = []
    score = table[candidate]["held-out"].mean_margin
    for ref in references:
        theirs = table[ref]["held-out"].mean_margin
        checks.append(BreadthCheck(f"breadth score above {ref}", score > theirs, f"{score:+.3f} vs {theirs:+.3f}"))
    drops = [f"{f} ({s}) {x.own:.3f} < {max(scores[r][(s, f)].own for r in references):.3f}"
             for (s, f), x in mine.items() if x.own < max(scores[r][(s, f)].own for r in references) - max_drop]
    checks.append(BreadthCheck(f"no facet more than {max_drop} below the better reference", not drops,
                               "; ".join(drops) or f"all {len(mine)} facets within"))
    if MINILM_Q in scores:
        floor = [(k, x) for k, x in mine.items()
                 if x.family in NOT_CONTENT_FAMILIES and scores[MINILM_Q][k].own >= minilm_floor]
        below = [f"{f} ({s}) {x.own:.3f} < {scores[MINILM_Q][(s, f)].own:.3f}" for (s, f), x in floor
                 if x.own < scores[MINILM_Q][(s, f)].own]
        checks.append(BreadthCheck(f"own >= MiniLM + question where it reaches {minilm_floor} (not content)",
                                   not below, "; ".join(below) or f"{len(floor)} of {len(floor)} facets"))
    reach = [k for k in mine if any(per[k].own >= reachable for per in scores.values() if k in per)]
    wide = sum(mine[k].margin >= MIN_MARGIN for k in reach)
    needed = int(np.ceil(share * len(reach) - 1e-9))
    checks.append(BreadthCheck(f"margin >= {MIN_MARGIN} on {share:.0%} of the facets some model reads (>= "
                               f"{reachable})", wide >= needed, f"{wide} of {len(reach)} (needs {needed})"))
    return checks


def breadth_acceptance_markdown(checks: Sequence[BreadthCheck], candidate: str, references: Sequence[str]) -> str:
    lines = [f"### Breadth acceptance: {candidate} against {', '.join(references)}", "",
             "| check | result | measured |", "|---|---|---|"]
    lines += [f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.measured} |" for c in checks]
    lines += ["", f"{sum(c.passed for c in checks)} of {len(checks)} checks pass.", ""]
    return "\n".join(lines)


def breadth_markdown(results: Mapping[str, dict]) -> str:
    """The breadth summary, then one table per family (own v-measure / margin per facet, per model)."""
    table = breadth_table(results)
    if not table:
        return ""
    models = list(table)
    lines = ["### Breadth: own question vs. the other questions of the same texts (facets/, v-measure)", "",
             "| model | breadth score (mean margin, held-out) | margins >= 0.05 | own >= MiniLM + question "
             "| mean margin, sets trained on |", "|---|---|---|---|---|"]
    for m in models:
        held, seen = table[m]["held-out"], table[m]["trained-on"]
        reach = "-" if held.reaches_minilm_q is None else f"{held.reaches_minilm_q} of {held.facets}"
        seen_cell = f"{seen.mean_margin:+.3f} ({seen.facets} facets)" if seen.facets else "-"
        lines.append(f"| {m} | {held.mean_margin:+.3f} | {held.margins_at_least} of {held.facets} | {reach} "
                     f"| {seen_cell} |")
    lines.append("")
    scores = {m: {(s.set, s.facet): s for s in facet_scores(results[m]["facets"])} for m in models}
    cells = sorted({(s.family, s.set, s.facet, s.trained_on) for per in scores.values() for s in per.values()})
    for family in sorted({c[0] for c in cells}):
        mine = [c for c in cells if c[0] == family]
        header = ["model", *[f"{f} ({s}){' *' if t else ''}" for _, s, f, t in mine]]
        lines += [f"**{family}** (own v-measure / margin; * a set training saw)", "", "| " + " | ".join(header) + " |",
                  "|---" * len(header) + "|"]
        for m in models:
            row = [scores[m].get((s, f)) for _, s, f, _ in mine]
            lines.append(f"| {m} | " + " | ".join("-" if x is None else f"{x.own:.3f} / {x.margin:+.3f}"
                                                  for x in row) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_breadth(results: Mapping[str, dict], path: Path) -> None:
    """Own-question margin per facet, one bar per model, facets grouped by family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m, r in results.items() if r.get("facets")]
    scores = {m: {(s.set, s.facet): s for s in facet_scores(results[m]["facets"])} for m in models}
    cells = sorted({(s.family, s.set, s.facet) for per in scores.values() for s in per.values()})
    fig, ax = plt.subplots(figsize=(max(10, len(cells) * 0.7), 4.8))
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        margins = [scores[m][(s, f)].margin if (s, f) in scores[m] else np.nan for _, s, f in cells]
        ax.bar(np.arange(len(cells)) + i * width, margins, width, label=m)
    ax.set_xticks(np.arange(len(cells)) + 0.4 - width / 2, [f"{f}\n{s[:14]}\n[{fam}]" for fam, s, f in cells],
                  fontsize=6)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(MIN_MARGIN, color="grey", lw=0.6, ls="--")
    ax.set_title("breadth: own question minus the best other question (v-measure), per facet")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
