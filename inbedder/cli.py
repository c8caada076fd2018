"""`inbedder ...` commands: thin wrappers over the library.

Each command parses its options, calls one library function, and prints. Every
failure ends the command in one line under the console's contract (the problem,
the log file with the traceback; exit 2 for bad settings, 1 otherwise); an
extra that is missing is named with its `pip install`, read from the declared
extras.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import click

from inbedder.console import failure_line, log_to_console, log_to_file
from inbedder.errors import ConfigError, require_extra
from inbedder.index.manifest import DEFAULT_MEMORY_BUDGET_GB, DEFAULT_METRIC, DEFAULT_RECALL_TARGET, METRICS


class _OneLineErrors(click.Group):
    """Every command's failure ends in one line under the console's contract (`console.failure_line`): the
    problem, the log file with the traceback, exit 2 for bad settings and 1 otherwise; never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the contract: one line here, the traceback in the log file
            command = ctx.invoked_subcommand or "inbedder"
            failed = failure_line(command, exc, log_to_file(command))
            error = click.ClickException(failed.line)
            error.exit_code = failed.exit_code
            raise error from None


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="inbedder")
def main() -> None:
    """InBedder for data lakes: instruction-following embeddings for tables."""
    log_to_console()


@dataclass(frozen=True)
class ModelChoice:
    name: str | None
    adapter: str | None
    dtype: str
    device: str | None
    threads: int | None


def _model_options(f):
    """--model/--adapter/--dtype/--device/--threads, handed to the command as one `model` value."""

    @functools.wraps(f)
    def wrapper(*args, model, adapter, dtype, device, threads, **kwargs):
        return f(*args, model=ModelChoice(model, adapter, dtype, device, threads), **kwargs)

    wrapper = click.option("--threads", type=int, default=None, help="torch CPU threads")(wrapper)
    wrapper = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")(wrapper)
    wrapper = click.option("--dtype", default="auto", show_default=True,
                           help="auto | float32 | bfloat16 | float16")(wrapper)
    wrapper = click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False),
                           help="An `inbedder train` output folder merged into the base at load "
                                "(replaces the shipped adapter).")(wrapper)
    return click.option("--model", "model", default=None,
                        help="Hub id, local directory, .gguf file, or an embedded model: smollm2-inbedder (the "
                             "default: SmolLM2-135M with the shipped adapter) or smollm2-zero-shot.")(wrapper)


def _load(choice: ModelChoice):
    from inbedder.engine import InBedder

    return InBedder.from_pretrained(choice.name, dtype=choice.dtype, device=choice.device,
                                    num_threads=choice.threads, adapter=choice.adapter)


@main.command()
@_model_options
@click.option("--rows", type=int, default=None, help="Use only the first N sample rows.")
@click.option("--show", type=int, default=3, show_default=True, help="Texts whose neighbours are printed.")
@click.option("-k", type=int, default=5, show_default=True, help="Neighbours per text.")
def demo(model, rows, show, k) -> None:
    """Embed the bundled Banking77 sample under two questions and compare neighbours."""
    from inbedder.demo import run_demo

    click.echo(run_demo(_load(model), rows, show, k))


@main.command()
@_model_options
@click.option("--instruction", "-i", required=True, help="The question to ask of each text.")
@click.option("--answers/--no-answers", default=False, help="Also print the model's short answers.")
@click.argument("texts", nargs=-1, required=True)
def encode(model, instruction, answers, texts) -> None:
    """Embed TEXTS under one instruction; prints JSON lines."""
    result = _load(model).embed(list(texts), {"q": instruction}, answers=answers)
    for i, text in enumerate(texts):
        row = {"text": text, "embedding": [round(float(x), 6) for x in result.vectors["q"][i]]}
        if result.answers:
            row["answer"] = result.answers["q"][i]
        click.echo(json.dumps(row))


def _instruction_pairs(items: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=\"question\"", param_hint="--instruction")
        name, question = item.split("=", 1)
        pairs[name.strip()] = question.strip()
    return pairs


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML job config.")
@click.option("--input", "input_path", help="Parquet dataset or Delta table (path or s3:// URI).")
@click.option("--key", help="Unique key column.")
@click.option("--text", help="Text column to embed.")
@click.option("--instruction", "instructions", multiple=True, help='NAME="question"; repeat for several.')
@click.option("--output", "output_path", help="Output table path.")
@click.option("--format", "output_format", type=click.Choice(["delta", "parquet"]), help="Output format.")
@click.option("--mode", type=click.Choice(["sidecar", "merge"]), help="sidecar table, or merge into the Delta source.")
@click.option("--passthrough", multiple=True, help="Column copied to the output; repeat for several.")
@click.option("--model", "model_name", help="Hub id, local directory or .gguf (default: embedded SmolLM2).")
@click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False),
              help="An `inbedder train` output folder merged into the base at load (model.adapter).")
@click.option("--max-error-rate", type=float, help="Fail the run when more rows than this share fail.")
@click.option("--report", "report_path", help="Write the JSON run report here.")
@click.option("--set", "overrides", multiple=True, help="section.field=value, overrides one config field.")
def embed(config_file, input_path, key, text, instructions, output_path, output_format, mode, passthrough,
          model_name, adapter, max_error_rate, report_path, overrides) -> None:
    """Embed a table's text column under each instruction and write the vectors to the lake."""
    base: dict = {}
    for dotted, value in [("input.path", input_path), ("input.key", key), ("input.text", text),
                          ("output.path", output_path), ("output.format", output_format), ("output.mode", mode),
                          ("model.name", model_name), ("model.adapter", adapter), ("max_error_rate", max_error_rate),
                          ("report_path", report_path)]:
        if value is not None:
            base[dotted] = value
    if passthrough:
        base["input.passthrough"] = list(passthrough)
    if instructions:
        base["instructions"] = _instruction_pairs(instructions)
    require_extra("job")
    from inbedder.job.entry import run_embed

    sys.exit(run_embed(config_file, list(overrides), base))


@main.command()
@click.option("--table", required=True, help="An inbedder output table (Delta or Parquet).")
@click.option("--instruction", "instructions", multiple=True, help="Instruction column(s); default: all.")
@click.option("--out", "out_dir", required=True, help="Folder; one sub-folder per instruction.")
@click.option("--metric", type=click.Choice(METRICS), default=DEFAULT_METRIC, show_default=True)
@click.option("--memory-budget-gb", type=float, default=DEFAULT_MEMORY_BUDGET_GB, show_default=True)
@click.option("--recall-target", type=float, default=DEFAULT_RECALL_TARGET, show_default=True)
@click.option("--rebuild", is_flag=True, help="Build from scratch even where an index exists.")
def index(table, instructions, out_dir, metric, memory_budget_gb, recall_target, rebuild) -> None:
    """Build or update one FAISS index per instruction column."""
    require_extra("index")
    from inbedder.index import BuildOptions, build_or_update

    options = BuildOptions.from_settings(metric, memory_budget_gb, recall_target)
    results = build_or_update(table, out_dir, list(instructions) or None, options, rebuild)
    for name, (manifest, counts) in results.items():
        click.echo(f"{name}: {manifest.factory} {manifest.search_params}, {manifest.rows} rows, table version "
                   f"{manifest.source_version}, recall@10 {manifest.recall_at_10}, {counts} -> {out_dir}/{name}")


@main.command()
@click.argument("index_dir")
@click.argument("texts", nargs=-1)
@click.option("-k", type=int, default=10, show_default=True)
@click.option("--table", help="Attach the matching rows' columns from this table.")
@click.option("--queries-file", type=click.File("r"), help="One query per line.")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="JSON lines output.")
def query(model, index_dir, texts, k, table, queries_file, as_json) -> None:
    """Embed queries with the index's instruction and return the nearest rows."""
    require_extra("index")
    from inbedder.index import Manifest, Searcher

    Manifest.read(Path(index_dir))  # not an index: fails before the model loads
    queries = list(texts) + ([line.rstrip("\n") for line in queries_file if line.strip()] if queries_file else [])
    if not queries:
        raise click.UsageError("give query texts or --queries-file")
    searcher = Searcher(index_dir, _load(model))
    results = searcher.search(queries, k, table)
    for q, hits in zip(queries, results):
        if as_json:
            click.echo(json.dumps({"query": q, "hits": [{"key": h.key, "score": h.score, "row": h.row}
                                                       for h in hits]}, default=str))
        else:
            click.echo(f"> {q}  ({searcher.manifest.instruction}: {searcher.manifest.instruction_text})")
            for h in hits:
                extra = "" if h.row is None else "  " + json.dumps({c: v for c, v in h.row.items()
                                                                    if not c.startswith("_")}, default=str)[:120]
                click.echo(f"  {h.score:.4f}  {h.key}{extra}")


@main.command()
@click.option("--index", "index_dirs", multiple=True, required=True, type=click.Path(file_okay=False),
              help="An `inbedder index` output folder (repeat: one per question); all must share one model.")
@click.option("--clusters", "cluster_dirs", multiple=True, type=click.Path(file_okay=False),
              help="An `inbedder cluster` report folder, shown on the page for its question (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--token-file", default=None, help="File holding the token every request must carry "
                                                 "(or set INBEDDER_SERVE_TOKEN).")
@_model_options
@click.option("--max-texts", type=click.IntRange(1), default=32, show_default=True, help="Texts per request.")
@click.option("--max-k", type=click.IntRange(1), default=100, show_default=True)
@click.option("--batch-window-ms", type=click.FloatRange(0), default=10.0, show_default=True,
              help="How long a batch waits at least for the queries it expects to share its forward pass.")
@click.option("--batch-max-wait-ms", type=click.FloatRange(0), default=250.0, show_default=True,
              help="How long it waits at most (under load: a share of the last forward pass's time).")
def serve(model, index_dirs, cluster_dirs, host, port, token_file, max_texts, max_k, batch_window_ms,
          batch_max_wait_ms) -> None:
    """Serve the indexes over HTTP (/search, /indexes, /health) with a web page at /."""
    require_extra("serve")
    from inbedder.serve.app import serve as run_server
    from inbedder.serve.settings import ServeSettings, read_token

    settings = ServeSettings(tuple(index_dirs), tuple(cluster_dirs), host, port, read_token(token_file), model.name,
                             model.adapter, max_texts=max_texts, max_k=max_k, batch_window_ms=batch_window_ms,
                             batch_max_wait_ms=batch_max_wait_ms, dtype=model.dtype, device=model.device,
                             threads=model.threads)
    run_server(settings)


@main.command(name="eval")
@_model_options
@click.option("--data-dir", default="../shared/data", show_default=True, type=click.Path(file_okay=False))
@click.option("--test", "tests", multiple=True,
              type=click.Choice(["clustering", "robustness", "stsb", "transfer", "facets"]),
              help="Which tests (default: all five; transfer: SGD domains held out of training; facets: the breadth "
                   "suite over ../shared/data/facets).")
@click.option("--dataset", "datasets", multiple=True, type=click.Choice(["massive", "clinc", "mtop"]),
              help="Two-facet clustering sets (default: all three).")
@click.option("--robustness-set", "robustness_sets", multiple=True, type=click.Choice(["fewrel", "fewnerd"]),
              help="Robustness sets (default: both).")
@click.option("--rows", type=int, default=None, help="Seeded sample of N texts per two-facet set (default: all).")
@click.option("--facet-rows", type=click.IntRange(0), default=500, show_default=True,
              help="Breadth suite: seeded sample of N texts per facet set (0: all).")
@click.option("--facet-set", "facet_sets", multiple=True,
              help="Breadth suite: only this facet set (repeat; default: all 14), e.g. to screen a candidate on "
                   "the facets it risks; the same seeded sample as the whole suite's.")
@click.option("--trained-on", "trained_on", multiple=True,
              help="A facet set the model's training saw (e.g. politeness_requests): scored apart from the breadth "
                   "score.")
@click.option("--robustness-rows", type=int, default=1000, show_default=True,
              help="Seeded sample of FewRel / Few-NERD texts (0: all).")
@click.option("--stsb-pairs", type=int, default=None, help="Seeded sample of STS-B test pairs (default: all).")
@click.option("--per-group", type=click.IntRange(1, 10), default=10, show_default=True,
              help="Robustness instructions per group (correct / implicit / incorrect).")
@click.option("--kmeans-seeds", type=click.IntRange(1), default=1, show_default=True,
              help="Average every v-measure over this many k-means seeds (margins move about +-0.02 between seeds).")
@click.option("--baselines/--no-baselines", default=True, help="Also run all-MiniLM-L6-v2 plain and prepended.")
@click.option("--also-model", "also_models", multiple=True,
              help="Further models in the same run, side by side (e.g. smollm2-zero-shot for a before/after).")
@click.option("--also-adapter", "also_adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Further adapters on the same base in the same run (e.g. bench/checkpoints/smollm2-inbedder-v1).")
@click.option("--before", "before_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Earlier `inbedder eval` JSON (same sample sizes): its models join the tables, and the model "
                   "here is checked against its first model (the training issue's acceptance).")
@click.option("--breadth-reference", "breadth_references", multiple=True,
              help="A model of this run or of --before (its name, or a part of it naming one model) the first model "
                   "is checked against on breadth (issue 28's acceptance); repeat, e.g. for v1 and v2.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@click.option("--out", "out_path", default="out/eval.json", show_default=True,
              help="JSON results; the markdown table (.md) and the plot (.png) are written beside it.")
def evaluate(model, data_dir, tests, datasets, robustness_sets, rows, facet_rows, facet_sets, trained_on,
             robustness_rows, stsb_pairs, per_group, kmeans_seeds, baselines, also_models, also_adapters, before_path,
             breadth_references, progress, out_path) -> None:
    """Instruction-awareness: two-facet clustering, robustness, STS-B, transfer, breadth; baselines in the same run."""

    require_extra("eval")
    from inbedder.evaluation import (EvalOptions, InBedderUnderTest, earlier_names, load_before, run_evaluation,
                                     to_markdown, write_results)
    from inbedder.evaluation.facets import FACET_SETS

    if not (Path(data_dir) / "clustering").is_dir():
        raise ConfigError(f"--data-dir {data_dir} has no clustering/ folder (the evaluation data)")
    progress = sys.stderr.isatty() if progress is None else progress
    options = EvalOptions(rows=rows, robustness_rows=robustness_rows or None, stsb_pairs=stsb_pairs,
                          per_group=per_group, kmeans_seeds=kmeans_seeds, tests=tuple(tests) or EvalOptions.tests,
                          datasets=tuple(datasets) or EvalOptions.datasets,
                          robustness_sets=tuple(robustness_sets) or EvalOptions.robustness_sets,
                          facet_rows=facet_rows or None, facet_sets=tuple(facet_sets), trained_on=tuple(trained_on))
    for option, names in (("--trained-on", trained_on), ("--facet-set", facet_sets)):
        unknown = sorted(set(names) - set(FACET_SETS))
        if unknown:
            raise click.UsageError(f"{option} {', '.join(unknown)}: not a facet set ({', '.join(FACET_SETS)})")
    before = load_before(before_path, Path(data_dir), options)
    embedders = [InBedderUnderTest(_load(model), progress)]
    embedders += [InBedderUnderTest(_load(replace(model, name=name, adapter=None)), progress)
                  for name in also_models]
    embedders += [InBedderUnderTest(_load(replace(model, adapter=path)), progress) for path in also_adapters]
    if baselines:
        from inbedder.evaluation.baselines import MiniLM, MiniLMBaseline

        minilm = MiniLM()
        embedders += [MiniLMBaseline(minilm, prepend=False), MiniLMBaseline(minilm, prepend=True)]
    if breadth_references and "facets" not in options.tests:
        raise ConfigError("--breadth-reference needs the breadth suite: add --test facets")
    names = [e.name for e in embedders]  # the results' names, known before the hour of embedding
    references = [_one_model(names + earlier_names(names, before), part) for part in breadth_references]
    results, checks_md = run_evaluation(embedders, Path(data_dir), options, before)
    if breadth_references:
        from inbedder.evaluation.facets import breadth_acceptance, breadth_acceptance_markdown

        candidate = next(iter(results))
        checks_md += "\n" + breadth_acceptance_markdown(breadth_acceptance(results, candidate, references),
                                                        candidate, references)
    json_path, md, png = write_results(results, Path(out_path), checks_md)
    click.echo(to_markdown(results) + checks_md)
    click.echo(f"wrote {json_path}, {md}, {png}")


def _one_model(names: list[str], part: str) -> str:
    """The model named `part`, or the one whose name contains it."""
    if part in names:
        return part
    found = [m for m in names if part in m]
    if len(found) != 1:
        raise ConfigError(f"--breadth-reference {part!r} names {len(found)} models of this run "
                          f"({'; '.join(found) or '; '.join(names)}): give a part of one name")
    return found[0]


@main.command()
@_model_options
@click.option("--table", required=True, help="An inbedder output table (Delta or Parquet).")
@click.option("--instruction", required=True, help="Name of the instruction whose vectors are clustered.")
@click.option("-k", "k", type=click.IntRange(2), required=True, help="Number of clusters.")
@click.option("--texts", default=None, help="Table with the key and text columns (the job's input), when the "
                                            "output has no text column.")
@click.option("--text-column", default=None,
              help="The text column (default: the one the job recorded it embedded, else `text`).")
@click.option("--sample-per-cluster", type=click.IntRange(1), default=12, show_default=True,
              help="Rows per cluster whose answers are generated for the explanation.")
@click.option("--report", "report_dir", default=None, help="Folder for report.md, clusters.png, clusters.json "
                                                           "(default: out/clusters/NAME).")
@click.option("--write/--no-write", default=True, help="Write NAME_cluster back to the table.")
@click.option("--seed", type=int, default=0, show_default=True)
def cluster(model, table, instruction, k, texts, text_column, sample_per_cluster, report_dir,
            write, seed) -> None:
    """k-means on one instruction's vectors, NAME_cluster written back, each cluster explained."""
    require_extra("cluster")
    from inbedder.clusters import ClusterOptions, cluster_table, write_report
    from inbedder.lake import VectorSource

    VectorSource.open(table, instruction)  # a table that is not there fails before the model loads
    options = ClusterOptions(k=k, sample_per_cluster=sample_per_cluster, seed=seed, write_back=write, texts=texts,
                             text_column=text_column)
    result, data, labels = cluster_table(table, instruction, options, _load(model))
    report = write_report(result, data, labels, report_dir or f"out/clusters/{instruction}")
    for c in result.clusters:
        click.echo(f"cluster {c.cluster:>3} ({c.size:>6} rows): {', '.join(c.answer_words) or '-'}"
                   f"  | head: {', '.join(c.head_tokens)}")
    if result.column:
        click.echo(f"wrote column {result.column} to {table}")
    click.echo(f"report: {report}")


@main.command()
@click.option("--table", required=True, help="An inbedder Delta output table.")
@click.option("--target-mb", type=click.IntRange(1), default=256, show_default=True, help="Size of the files written.")
@click.option("--vacuum-hours", type=click.IntRange(0), default=None,
              help="Then delete files unreferenced for this long (ends time travel past it; under 168 h allowed "
                   "only here, where no other writer runs).")
def optimize(table, target_mb, vacuum_hours) -> None:
    """Compact an output table's small files (run after many incremental runs, e.g. weekly)."""
    require_extra("job")
    from inbedder.lake import compact

    result = compact(table, target_mb, vacuum_hours)
    click.echo(f"{table}: {result.files_before} -> {result.files_after} files, version {result.version}"
               + (f", {result.removed_by_vacuum} unreferenced files deleted" if vacuum_hours is not None else ""))


@main.command(name="train-data")
@click.option("--data-dir", default="../shared/data", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", default="out/train-data", show_default=True,
              help="Folder for train.parquet and validation.parquet.")
@click.option("--per-source", type=click.IntRange(1), default=3000, show_default=True,
              help="Rows sampled from each QA set.")
@click.option("--per-label-question", type=click.IntRange(1), default=1500, show_default=True,
              help="Rows per labelled corpus and question kind.")
@click.option("--coarse-facets", is_flag=True, help="Add coarse-over-fine label rows (emotion groups, sentiment, "
                                                   "hinted banking areas, passage topics).")
@click.option("--subject-facet", is_flag=True, help="Add broad subjects of SQuAD questions (labelled with "
                                                   "all-MiniLM-L6-v2); area questions then name the bank.")
@click.option("--request-facets", is_flag=True, help="Add short requests (SGD, SNIPS, NLU++) each asked which area "
                                                    "and what the user wants; SGD's held-out domains stay out.")
@click.option("--per-request-source", type=click.IntRange(1), default=6000, show_default=True,
              help="SGD texts sampled (SNIPS and NLU++: a third each); each gives an area and an intent row.")
@click.option("--breadth-facets", is_flag=True, help="Add questions about form and attitude: politeness, platform "
              "and community of requests, hate / offensive tweets (the facet sets licensed for training), and the "
              "kind of text across seven sources.")
@click.option("--per-breadth-question", type=click.IntRange(4), default=300, show_default=True,
              help="Rows per breadth question kind.")
@click.option("--question-kinds", is_flag=True, help="Add the QA sets' questions asked what type of answer they "
              "expect (a person, a place, a number, a reason, ...).")
@click.option("--per-question-kind", type=click.IntRange(1), default=200, show_default=True,
              help="Rows per kind of answer.")
@click.option("--seed", type=int, default=0, show_default=True)
def train_data(data_dir, out_dir, per_source, per_label_question, coarse_facets, subject_facet, request_facets,
               per_request_source, breadth_facets, per_breadth_question, question_kinds, per_question_kind,
               seed) -> None:
    """Build (input, instruction, answer) training rows from ../shared/data; evaluation sets stay out."""

    import pyarrow.parquet as pq

    from inbedder.training import DataOptions, build_training_rows

    options = DataOptions(per_qa_source=per_source, per_label_question=per_label_question, seed=seed,
                          coarse_facets=coarse_facets, subject_facet=subject_facet, request_facets=request_facets,
                          per_request_source=per_request_source, breadth_facets=breadth_facets,
                          per_breadth_question=per_breadth_question, question_kinds=question_kinds,
                          per_question_kind=per_question_kind)
    try:
        train, validation = build_training_rows(data_dir, options)
    except FileNotFoundError as exc:
        raise click.ClickException(f"training data source missing: {exc}") from None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    pq.write_table(train, Path(out_dir) / "train.parquet")
    pq.write_table(validation, Path(out_dir) / "validation.parquet")
    counts = train.group_by("source").aggregate([("source", "count")]).to_pylist()
    for row in sorted(counts, key=lambda r: r["source"]):
        click.echo(f"{row['source']:>21}: {row['source_count']} rows")
    click.echo(f"wrote {train.num_rows} training and {validation.num_rows} validation rows to {out_dir}")


@main.command()
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="YAML with TrainConfig fields; command-line options override it.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override one field, e.g. lr=1e-4.")
@click.option("--resume", is_flag=True, help="Continue the run whose checkpoint is in OUT/checkpoint.")
def train(config_file, overrides, resume) -> None:
    """The paper's recipe: learn short answers (LoRA / top layers / full), resumable; exports OUT/adapter."""

    require_extra("train")
    from inbedder.settings_files import load_settings
    from inbedder.training import TrainConfig
    from inbedder.training import train as run_training

    config = load_settings(TrainConfig, config_file, list(overrides), what="training config")
    folder = run_training(config, resume=resume)
    click.echo(f"adapter written to {folder}; use it with --adapter {folder}")


@main.command()
@click.option("--adapter", "adapters", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="A LoRA adapter folder (`inbedder train` output); two or more, or one with --rank / --dtype.")
@click.option("--weight", "weights", multiple=True, type=float,
              help="One per --adapter, in order, summing to 1 (default: equal weights).")
@click.option("--rank", type=click.IntRange(1), default=None,
              help="Store the result at this rank (each layer's update truncated by SVD; default: the summed rank).")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
              help="Precision the adapter is stored in (the engine merges it in float32).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the blend to.")
def soup(adapters, weights, rank, dtype, out) -> None:
    """Blend LoRA adapters trained from one start: the weighted mean of their weight updates."""
    from inbedder.training.soup import average_adapters, compact_adapter

    compacting = rank is not None or dtype != "float32"
    if len(adapters) == 1 and not compacting:
        raise ConfigError("give two adapters or more to blend (one adapter only with --rank or --dtype)")
    if len(adapters) == 1:
        folder = Path(adapters[0])
    else:
        weights = list(weights) or [1 / len(adapters)] * len(adapters)
        folder = average_adapters([Path(a) for a in adapters], weights, Path(out))
    if compacting:
        kept = compact_adapter(folder, Path(out), rank, dtype)
        folder = Path(out)
        click.echo(f"stored at rank {kept['rank']} (was {kept['from_rank']}) in {dtype}: each layer keeps "
                   f"{kept['energy_kept_min']:.4%} of its update's energy or more "
                   f"(mean {kept['energy_kept_mean']:.4%})")
    click.echo(f"adapter written to {folder}; use it with --adapter {folder}")


@main.command()
@_model_options
def info(model) -> None:
    """Print the model's identity: name, fingerprint, template, dimension."""
    click.echo(json.dumps(_load(model).metadata(), indent=2))


if __name__ == "__main__":
    sys.exit(main())
