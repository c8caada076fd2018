"""`InBedder`: the public embedder, used the way sentence-transformers is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from inbedder.engine.answers import greedy_answers
from inbedder.engine.digests import canonical_json_sha256
from inbedder.engine.forward import ForwardPlan, ForwardStats
from inbedder.engine.pooling import Pooling, pooling_for
from inbedder.engine.loading import LoadedModel, describe_weights, load_model
from inbedder.engine.prompts import PROMPT_TEMPLATE, PromptTokenizer
from inbedder.engine.validation import check_instructions, raise_for_rows, row_problems

DEFAULT_MAX_LENGTH = 512
FINGERPRINT_VERSION = 1


@dataclass
class Embeddings:
    """Vectors per instruction name, in input order; rows with an error are NaN."""

    vectors: dict[str, np.ndarray]
    errors: list[str | None]
    answers: dict[str, list[str | None]] | None = None
    stats: ForwardStats = field(default_factory=ForwardStats)

    @property
    def ok(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)


def template_for(pooling: Pooling) -> str:
    return PROMPT_TEMPLATE + pooling.template_suffix


def fingerprint_of(weights_digest: str, pooling: Pooling, max_length: int) -> str:
    return canonical_json_sha256(
        {"v": FINGERPRINT_VERSION, "weights": weights_digest, "template": template_for(pooling),
         "pooling": pooling.description, "max_length": max_length, "truncation": "left"}
    )[:32]


def expected_fingerprint(name_or_path: str | None = None, *, adapter: str | None = None,
                         max_length: int = DEFAULT_MAX_LENGTH) -> str | None:
    """The fingerprint `InBedder.from_pretrained` would give, without loading the model (None for hub ids):
    lets a job see that an output is already complete before starting any replica."""
    described = describe_weights(name_or_path, adapter)
    return None if described is None else fingerprint_of(described[1], pooling_for(described[2]), max_length)


class InBedder:
    """Embeds a text by the model's state just before it answers a question about it."""

    def __init__(self, loaded: LoadedModel, *, max_length: int = DEFAULT_MAX_LENGTH, token_budget: int | None = None):
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {max_length}")
        self.loaded = loaded
        self.max_length = max_length
        # CPU: a small budget keeps activations in cache
        self.token_budget = token_budget or (16384 if loaded.device.type == "cuda" else 1024)
        self.prompts = PromptTokenizer(loaded.tokenizer, max_length, loaded.pooling)
        self._base = loaded.model.base_model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None = None,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        token_budget: int | None = None,
        allow_pickle: bool = False,
        revision: str | None = None,
        num_threads: int | None = None,
        adapter: str | None = None,
    ) -> InBedder:
        """Load by hub id, local directory or .gguf file; no name gives the embedded default."""
        if num_threads:
            torch.set_num_threads(num_threads)
        loaded = load_model(name_or_path, dtype=dtype, device=device, allow_pickle=allow_pickle, revision=revision,
                            adapter=adapter)
        return cls(loaded, max_length=max_length, token_budget=token_budget)

    # --- what a stored vector needs to be traced back -------------------------------
    @property
    def dim(self) -> int:
        return int(self._hidden_size())

    @property
    def model_name(self) -> str:
        return self.loaded.name

    @property
    def template(self) -> str:
        return template_for(self.loaded.pooling)

    @property
    def pooling(self) -> str:
        return self.loaded.pooling.description

    @property
    def fingerprint(self) -> str:
        """Same weights + template + pooling + truncation -> same fingerprint, on any machine."""
        return fingerprint_of(self.loaded.weights_digest, self.loaded.pooling, self.max_length)

    def metadata(self) -> dict[str, object]:
        return {"model": self.model_name, "fingerprint": self.fingerprint, "template": self.template,
                "pooling": self.pooling, "dim": self.dim, "max_length": self.max_length,
                "dtype": str(self.loaded.dtype).replace("torch.", "")}

    # --- embedding --------------------------------------------------------------------
    def encode(
        self,
        texts: Sequence[str] | str,
        instruction: str | Mapping[str, str],
        *,
        show_progress_bar: bool = False,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """float32 (n, dim) for one question; {name: (n, dim)} for a mapping of questions.

        Any bad text raises InvalidInputError naming its position; use `embed` for per-row errors.
        """
        single_text = isinstance(texts, str)
        batch = [texts] if single_text else list(texts)
        mapping = {"_": instruction} if isinstance(instruction, str) else instruction
        result = self.embed(batch, mapping, on_error="raise", show_progress_bar=show_progress_bar)
        vectors = {k: (v[0] if single_text else v) for k, v in result.vectors.items()}
        return vectors["_"] if isinstance(instruction, str) else vectors

    def embed(
        self,
        texts: Sequence[object],
        instructions: Mapping[str, str],
        *,
        answers: bool = False,
        max_answer_tokens: int = 16,
        on_error: str = "raise",
        show_progress_bar: bool = False,
    ) -> Embeddings:
        """All instructions over all texts in one call; shared input work is done once.

        on_error="raise" fails on any bad text; "row" returns NaN vectors and a reason per bad row.
        """
        if on_error not in ("raise", "row"):
            raise ValueError(f"on_error must be 'raise' or 'row', got {on_error!r}")
        instructions = check_instructions(instructions)
        for name, question in instructions.items():
            self.prompts.check_instruction(name, question)
        problems = row_problems(texts)
        if on_error == "raise":
            raise_for_rows(problems)
        good = [i for i, p in enumerate(problems) if p is None]
        good_texts = [str(texts[i]) for i in good]
        seqs = [self.prompts.tokenize(good_texts, q) for q in instructions.values()] if good else []
        plan = self._plan()
        vectors = {name: np.full((len(texts), self.dim), np.nan, dtype=np.float32) for name in instructions}
        if good:
            with tqdm(total=len(good), disable=not show_progress_bar, desc="embedding", unit="text") as bar:
                plan.on_batch_done = bar.update
                states = self._states(plan, seqs)
            for k, name in enumerate(instructions):
                vectors[name][good] = states[k]
        answer_texts = None
        if answers:
            answer_texts = {}
            for k, name in enumerate(instructions):
                column: list[str | None] = [None] * len(texts)
                if good:
                    for i, a in zip(good, greedy_answers(plan, self.loaded.model, self.loaded.tokenizer, seqs[k],
                                                         pooling=self.loaded.pooling,
                                                         max_new_tokens=max_answer_tokens)):
                        column[i] = a
                answer_texts[name] = column
        return Embeddings(vectors, list(problems), answer_texts, plan.stats)

    def answer(self, texts: Sequence[str], instruction: str, *, max_new_tokens: int = 16) -> list[str]:
        """Greedy short answers to `instruction` for each text (deterministic)."""
        result = self.embed(texts, {"_": instruction}, answers=True, max_answer_tokens=max_new_tokens)
        assert result.answers is not None
        return [a or "" for a in result.answers["_"]]

    # --- internals --------------------------------------------------------------------
    def _plan(self) -> ForwardPlan:
        return ForwardPlan(self._base, int(self.loaded.tokenizer.pad_token_id), self.loaded.device,
                           self.token_budget)

    def _states(self, plan: ForwardPlan, seqs: list[list[list[int]]]) -> np.ndarray:
        mask_id = self.loaded.tokenizer.mask_token_id
        return self.loaded.pooling.states(plan, seqs, None if mask_id is None else int(mask_id))

    def _hidden_size(self) -> int:
        config = self.loaded.model.config
        # OPT-350m projects its final states down to word_embed_proj_dim
        return getattr(config, "word_embed_proj_dim", None) or config.hidden_size
