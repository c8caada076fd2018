"""Row and instruction checks, so bad input never turns into a garbage vector."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from inbedder.engine.errors import InvalidInputError, describe_problems

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # becomes a column prefix: NAME_embedding


def text_problem(text: object) -> str | None:
    """Why this value can't be embedded, or None when it can."""
    if text is None:
        return "text is null"
    if not isinstance(text, str):
        return f"text is a {type(text).__name__}, not a string"
    if not text.strip():
        return "text is empty or whitespace-only"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text is not valid Unicode (lone surrogate; undecodable bytes upstream?)"
    return None


def row_problems(texts: Sequence[object]) -> list[str | None]:
    return [text_problem(t) for t in texts]


def raise_for_rows(problems: Sequence[str | None]) -> None:
    bad = [(f"row {i}", why) for i, why in enumerate(problems) if why is not None]
    if bad:
        raise InvalidInputError(
            f"{len(bad)} text(s) can't be embedded: {describe_problems(bad)} "
            "(pass on_error='row' to get a per-row error instead)",
            bad,
        )


def check_instructions(instructions: Mapping[str, object]) -> dict[str, str]:
    """Names must be usable as column prefixes; questions must be non-empty strings."""
    if not instructions:
        raise InvalidInputError("no instruction given: name at least one question to ask of each text")
    bad: list[tuple[object, str]] = []
    for name, question in instructions.items():
        if not isinstance(name, str) or not name.strip():
            bad.append((f"instruction name {name!r}", "name is empty or not a string"))
        elif not _NAME.fullmatch(name):
            bad.append((f"instruction {name!r}", "name must be ASCII letters, digits and _, not starting with a digit"))
        if not isinstance(question, str):
            bad.append((f"instruction {name!r}", f"question is a {type(question).__name__}, not a string"))
        elif not question.strip():
            bad.append((f"instruction {name!r}", "question is empty"))
    if bad:
        raise InvalidInputError(f"invalid instruction(s): {describe_problems(bad)}", bad)
    return dict(instructions)  # type: ignore[arg-type]
