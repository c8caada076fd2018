"""InBedder's prompt, tokenised exactly as the reference implementation does it.

Input first, then the question, then the response cue. Over-long prompts are cut
on the left so the question is always kept and the input loses its beginning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inbedder.engine.errors import InvalidInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from inbedder.engine.pooling import Pooling

PROMPT_TEMPLATE = "### Input:\n{input}\n\n### Instruction:\n{instruction}\n\n### Response:"
MASK_COUNT = 3  # masked LMs answer through three <mask> slots after the prompt


def format_prompt(text: str, instruction: str) -> str:
    return PROMPT_TEMPLATE.format(input=text, instruction=instruction)


@dataclass(frozen=True)
class PromptTokenizer:
    """Turns (text, instruction) pairs into the token ids the model sees."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int
    pooling: Pooling  # its <mask> slots, if any, end every prompt

    def prompt_suffix(self) -> str:
        return self.pooling.prompt_suffix(self.tokenizer)

    def instruction_tokens(self, instruction: str) -> int:
        """Tokens the question part needs, with special tokens: it must fit or be refused."""
        tail = PROMPT_TEMPLATE.split("{input}")[1].format(instruction=instruction) + self.prompt_suffix()
        ids = self.tokenizer(tail, add_special_tokens=True)["input_ids"]
        return len(ids)

    def check_instruction(self, name: str, instruction: str) -> None:
        needed = self.instruction_tokens(instruction)
        if needed >= self.max_length:
            raise InvalidInputError(
                f"instruction {name!r} is {needed} tokens with the prompt around it, over the "
                f"length budget of max_length={self.max_length}: shorten it or raise max_length",
                [(f"instruction {name!r}", f"{needed} tokens >= max_length {self.max_length}")],
            )

    def tokenize(self, texts: Sequence[str], instruction: str) -> list[list[int]]:
        prompts = [format_prompt(t, instruction) + self.prompt_suffix() for t in texts]
        encoded = self.tokenizer(
            prompts, truncation=True, max_length=self.max_length, add_special_tokens=True
        )
        return [list(ids) for ids in encoded["input_ids"]]
