"""`inbedder ...` commands: thin wrappers over the library."""

from __future__ import annotations

import json
import sys

import click


@click.group()
@click.version_option(package_name="inbedder")
def main() -> None:
    """InBedder for data lakes: instruction-following embeddings for tables."""


def _model_options(f):
    f = click.option("--model", "model", default=None, help="Hub id, local directory or .gguf file (default: embedded SmolLM2-135M-Instruct).")(f)
    f = click.option("--dtype", default="auto", show_default=True, help="auto | float32 | bfloat16 | float16")(f)
    f = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")(f)
    f = click.option("--threads", type=int, default=None, help="torch CPU threads")(f)
    return f


def _load(model, dtype, device, threads):
    from inbedder.engine import InBedder, ModelLoadError

    try:
        return InBedder.from_pretrained(model, dtype=dtype, device=device, num_threads=threads)
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@_model_options
@click.option("--rows", type=int, default=None, help="Use only the first N sample rows.")
@click.option("--show", type=int, default=3, show_default=True, help="Texts whose neighbours are printed.")
@click.option("-k", type=int, default=5, show_default=True, help="Neighbours per text.")
def demo(model, dtype, device, threads, rows, show, k) -> None:
    """Embed the bundled Banking77 sample under two questions and compare neighbours."""
    from inbedder.demo import run_demo

    click.echo(run_demo(_load(model, dtype, device, threads), rows, show, k))


@main.command()
@_model_options
@click.option("--instruction", "-i", required=True, help="The question to ask of each text.")
@click.option("--answers/--no-answers", default=False, help="Also print the model's short answers.")
@click.argument("texts", nargs=-1, required=True)
def encode(model, dtype, device, threads, instruction, answers, texts) -> None:
    """Embed TEXTS under one instruction; prints JSON lines."""
    from inbedder.engine import InvalidInputError

    embedder = _load(model, dtype, device, threads)
    try:
        result = embedder.embed(list(texts), {"q": instruction}, answers=answers)
    except InvalidInputError as exc:
        raise click.ClickException(str(exc)) from exc
    for i, text in enumerate(texts):
        row = {"text": text, "embedding": [round(float(x), 6) for x in result.vectors["q"][i]]}
        if result.answers:
            row["answer"] = result.answers["q"][i]
        click.echo(json.dumps(row))


@main.command()
@_model_options
def info(model, dtype, device, threads) -> None:
    """Print the model's identity: name, fingerprint, template, dimension."""
    click.echo(json.dumps(_load(model, dtype, device, threads).metadata(), indent=2))


if __name__ == "__main__":
    sys.exit(main())
