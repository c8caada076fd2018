"""`inbedder train`: the paper's recipe - learn to give short answers, so the vectors follow the question.

Causal LMs see the engine's input-first prompt followed by the short answer and
EOS; the loss covers only the answer and EOS. Masked LMs see the prompt with its
<mask> slots, which must predict the answer's first tokens. AdamW, cosine
schedule with warm-up (lr 2e-5 and 3% warm-up by default, as the paper).

To fit a CPU: LoRA adapters (peft) or training only the top layers, optional
bf16 autocast. Runs are resumable: a checkpoint holds the trainable weights,
the optimizer and scheduler state and the step; the data order is a function of
(seed, epoch), so a run stopped and resumed ends with the same weights as one
uninterrupted run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from inbedder.engine.hardware import cpu_bf16_or_fp32
from inbedder.engine.loading import ADAPTER_RECORD, TRAINED_WEIGHTS, ZERO_SHOT_MODEL, load_model
from inbedder.engine.pooling import Pooling
from inbedder.engine.prompts import PromptTokenizer
from inbedder.errors import TrainingError
from inbedder.fs import replace_folder

log = logging.getLogger(__name__)

IGNORE = -100


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="hub id, local dir or .gguf; None: the embedded default's "
                                                        "base (zero-shot SmolLM2), never the shipped adapter")
    train: str = Field(description="Parquet or JSONL with input, instruction, answer")
    validation: str | None = None
    out: str
    method: Literal["lora", "top_layers", "full"] = "lora"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    top_layers: int = Field(default=2, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=256, ge=16)
    max_answer_tokens: int = Field(default=16, ge=1)
    bf16: bool = False
    group_by_length: bool = Field(default=False, description="batch rows of similar length (less padding, "
                                                             "same rows per epoch); off reproduces older runs")
    seed: int = 0
    checkpoint_every: int = Field(default=50, ge=1)
    eval_every: int = Field(default=100, ge=1)
    validation_rows: int = Field(default=200, ge=1)
    contrastive_weight: float = Field(default=0.0, ge=0, description=(
        "weight of a supervised contrastive term on the states the engine embeds: rows whose answers stand for "
        "one label (the data's `group`) pull together, other labels of the same question push apart; steps "
        "then hold one question's rows in pairs of a label. 0: the paper's recipe alone"))
    contrastive_temperature: float = Field(default=0.1, gt=0)
    contrastive_hard_pairs: bool = Field(default=False, description=(
        "with the contrastive term, use the texts asked under two questions of one source: a fine question's "
        "step holds anchors of one coarse label (a domain's intents are each other's negatives) and a coarse "
        "question's partner has another fine label (a domain's intents are pulled together)"))
    contrastive_coarse_merge: bool = Field(default=False, description=(
        "with hard pairs, a coarse question's step holds two of its labels, each with rows of as many fine labels "
        "as it has (three positives of other intents per anchor, not one partner): the coarse question is taught "
        "to merge a domain's intents as strongly as the fine question is taught to spread them"))
    contrastive_coarse_temperature: float | None = Field(default=None, gt=0, description=(
        "with coarse merge, the temperature of a coarse question's steps (unset: contrastive_temperature). Lower "
        "weighs a positive that lags the others more: it asks a domain's intents to collapse, not just to rank"))
    init_from: str | None = Field(default=None, description=(
        "start from the trainable weights of an earlier run's checkpoint folder (same method and base), or from "
        "an exported LoRA adapter (a run's `adapter/` or an `inbedder soup`; lora_r and lora_alpha must be its own)"))
    threads: int | None = None
    progress: bool = True

    @model_validator(mode="after")
    def _coarse_options_need_their_prerequisites(self) -> TrainConfig:
        if self.contrastive_coarse_merge and not (self.contrastive_weight and self.contrastive_hard_pairs):
            raise ValueError("contrastive_coarse_merge needs contrastive_weight > 0 and contrastive_hard_pairs: true")
        if self.contrastive_coarse_temperature is not None and not self.contrastive_coarse_merge:
            raise ValueError("contrastive_coarse_temperature needs contrastive_coarse_merge: true")
        return self

    def identity(self) -> dict:
        """What must not change between a run and its resumption."""
        volatile = {"max_steps", "checkpoint_every", "eval_every", "progress", "threads"}
        identity = {k: v for k, v in self.model_dump().items() if k not in volatile}
        if not self.group_by_length:  # off is how runs trained before the option existed: their checkpoints resume
            del identity["group_by_length"]
        if not self.contrastive_weight:  # the same for options added later, at their defaults
            for key in ("contrastive_weight", "contrastive_temperature", "contrastive_hard_pairs"):
                del identity[key]
        elif not self.contrastive_hard_pairs:
            del identity["contrastive_hard_pairs"]
        if not self.contrastive_coarse_merge:
            del identity["contrastive_coarse_merge"]
        if self.contrastive_coarse_temperature is None:
            del identity["contrastive_coarse_temperature"]
        if self.init_from is None:
            del identity["init_from"]
        return identity


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


# --- data ------------------------------------------------------------------------------

def read_rows(path: str) -> pa.Table:
    """input / instruction / answer rows from Parquet or JSONL; any unusable row is named."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    if not Path(path).exists():
        raise TrainingError(f"training data {path} does not exist")
    table = pj.read_json(path) if path.endswith((".jsonl", ".json")) else pq.read_table(path)
    missing = [c for c in ("input", "instruction", "answer") if c not in table.column_names]
    if missing:
        raise TrainingError(f"{path} lacks column(s) {', '.join(missing)}; it has {', '.join(table.column_names)}")
    bad = []
    for i, row in enumerate(table.select(["input", "instruction", "answer"]).to_pylist()):
        empty = [c for c, v in row.items() if not isinstance(v, str) or not v.strip()]
        if empty:
            bad.append(f"row {i}: empty or non-text {', '.join(empty)}")
    if bad:
        raise TrainingError(f"{path} has {len(bad)} unusable row(s): " + "; ".join(bad[:5]))
    if table.num_rows == 0:
        raise TrainingError(f"{path} has no rows")
    return table


def encode_example(tokenizer, pooling: Pooling, text: str, instruction: str, answer: str,
                   config: TrainConfig) -> Example:
    """Prompt exactly as the engine builds it, then the answer; only the answer is a target."""
    if pooling.reads_mask_slots:
        ids = PromptTokenizer(tokenizer, config.max_length, pooling).tokenize([text], instruction)[0]
        count = pooling.mask_slots
        answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"][:count]
        fill = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        answer_ids = answer_ids + [fill] * (count - len(answer_ids))
        slots = [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id][-count:]
        labels = [IGNORE] * len(ids)
        for slot, target in zip(slots, answer_ids):
            labels[slot] = target
        return Example(ids, labels)
    answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"][: config.max_answer_tokens]
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    prompt = PromptTokenizer(tokenizer, config.max_length - len(answer_ids), pooling).tokenize([text], instruction)[0]
    return Example(prompt + answer_ids, [IGNORE] * len(prompt) + answer_ids)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):  # right padding: positions of real tokens start at 0
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


GROUPED_STEPS = 50  # optimizer steps whose rows are sorted by length together when grouping


def epoch_order(n: int, seed: int, epoch: int, lengths: np.ndarray | None = None, per_step: int = 1) -> np.ndarray:
    """The data order of one epoch: a function of (seed, epoch) only, so a resumed run sees the same.

    With `lengths`, a shuffled window of GROUPED_STEPS steps' rows is sorted by length and cut into
    steps, and the steps are shuffled again: a batch pads to a similar length instead of to the one
    long passage drawn among short requests, while every step still mixes sources at random.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    if lengths is None:
        return order
    window = per_step * GROUPED_STEPS
    grouped = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                              for chunk in np.split(order, range(window, n, window))])
    steps = np.split(grouped, range(per_step, n, per_step))
    full, tail = (steps, []) if len(steps[-1]) == per_step else (steps[:-1], steps[-1:])
    return np.concatenate([full[int(i)] for i in rng.permutation(len(full))] + tail)


def data_digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for row in table.select(["input", "instruction", "answer"]).to_pylist():
        h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()[:16]


# --- model ------------------------------------------------------------------------------

def prepare_model(model: torch.nn.Module, config: TrainConfig, pooling: Pooling) -> torch.nn.Module:
    """Make only what the method trains require gradients."""
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                          target_modules="all-linear", task_type=None if pooling.reads_mask_slots else "CAUSAL_LM")
        return get_peft_model(model, lora)
    for p in model.parameters():
        p.requires_grad_(config.method == "full")
    if config.method == "top_layers":
        layers = _decoder_layers(model)
        for layer in layers[-config.top_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
    return model


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith(("layers", "layer", "h")):
            return module
    raise TrainingError("could not find the model's layer list for --method top_layers")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


# --- the loop ---------------------------------------------------------------------------

@dataclass
class TrainState:
    step: int
    total_steps: int
    history: list[dict]


def total_steps(rows: int, config: TrainConfig, groups: tuple[str | None, ...] | None = None,
                relatives: tuple[tuple[str | None, str | None], ...] | None = None) -> int:
    per_step = config.batch_size * config.grad_accum
    per_epoch = (len(paired_steps(groups, config.seed, 0, per_step, relatives, config.contrastive_coarse_merge))
                 if config.contrastive_weight and groups
                 else math.ceil(rows / per_step))
    return min(per_epoch * config.epochs, config.max_steps or per_epoch * config.epochs)


@functools.lru_cache(maxsize=2)
def paired_steps(groups: tuple[str | None, ...], seed: int, epoch: int, per_step: int,
                 relatives: tuple[tuple[str | None, str | None], ...] | None = None,
                 merge: bool = False) -> list[np.ndarray]:
    """The steps of one epoch for the contrastive term: a function of (groups, seed, epoch) only.

    Each labelled row is an anchor once, followed by a partner drawn from its group; a step holds
    the anchors of one question kind (the group's prefix before ':'), so its other rows are that
    question's other labels, the negatives the term needs. Unlabelled rows (QA) make steps of their own.

    With `relatives` (each row's text's group under the nearest coarser and finer question, see
    `row_relatives`), the negatives and positives are the hard ones: a fine question's anchors are
    chunked by their coarse label where it has two fine labels or more, and a coarse question's
    partner has another fine label than its anchor where one exists. With `merge` too, a coarse
    question's steps are `coarse_merge_steps` instead of anchor + partner.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    order = rng.permutation(len(groups))
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g is not None:
            members.setdefault(g, []).append(i)
    anchors_of: dict[str, list[int]] = {}
    unlabelled: list[int] = []
    for i in order:
        g = groups[int(i)]
        (anchors_of.setdefault(g.split(":", 1)[0], []) if g is not None else unlabelled).append(int(i))
    steps: list[np.ndarray] = []
    anchors_per_step = max(per_step // 2, 1)
    for anchors in anchors_of.values():
        if merge and asks_a_coarse_question(anchors, relatives):
            steps += coarse_merge_steps(anchors, groups, relatives, per_step, rng)
            continue
        for chunk in _anchor_chunks(anchors, groups, relatives, anchors_per_step):
            rows = []
            for a in chunk:
                rows.append(a)
                pool = [m for m in members[groups[a]] if m != a]
                if relatives is not None and relatives[a][1] is not None:
                    pool = [m for m in pool if relatives[m][1] != relatives[a][1]] or pool
                if pool:
                    rows.append(pool[int(rng.integers(len(pool)))])
            steps.append(np.array(rows))
    steps += [np.array(unlabelled[i: i + per_step]) for i in range(0, len(unlabelled), per_step)]
    return [steps[int(i)] for i in rng.permutation(len(steps))]


def asks_a_coarse_question(rows, relatives: tuple[tuple[str | None, str | None], ...] | None) -> bool:
    """Rows of a question that has a finer one (an area question's rows: their texts have intents)."""
    return relatives is not None and any(relatives[int(i)][1] is not None for i in rows)


def coarse_merge_steps(anchors: list[int], groups: tuple[str | None, ...],
                       relatives: tuple[tuple[str | None, str | None], ...], per_step: int,
                       rng: np.random.Generator) -> list[np.ndarray]:
    """A coarse question's steps: two of its labels, half a step each, each half spread over its fine labels.

    Every row is in one step; within a label its fine labels take turns, so a half of four rows of a
    domain with four intents holds all four (each row's positives are the other intents).
    """
    half = max(per_step // 2, 1)
    halves: list[tuple[str, list[int]]] = []
    by_label: dict[str, dict[str | None, list[int]]] = {}
    for a in anchors:
        by_label.setdefault(groups[a], {}).setdefault(relatives[a][1], []).append(a)
    for label, by_fine in by_label.items():
        queues = list(by_fine.values())
        turns = [q[i] for i in range(max(len(q) for q in queues)) for q in queues if i < len(q)]
        halves += [(label, turns[i: i + half]) for i in range(0, len(turns), half)]
    pending: dict[str, list[list[int]]] = {}
    for i in rng.permutation(len(halves)):
        pending.setdefault(halves[int(i)][0], []).append(halves[int(i)][1])
    steps = []
    while pending:  # the two labels with the most halves left: no half is left alone while another label has any
        pair = sorted(pending, key=lambda label: -len(pending[label]))[:2]
        steps.append(np.array([row for label in pair for row in pending[label].pop()]))
        pending = {label: left for label, left in pending.items() if left}
    return steps


def _anchor_chunks(anchors: list[int], groups: tuple[str | None, ...],
                   relatives: tuple[tuple[str | None, str | None], ...] | None, size: int) -> list[list[int]]:
    """One question's anchors cut into steps: in order, or with hard negatives by their coarse label."""
    if relatives is None:
        return [anchors[i: i + size] for i in range(0, len(anchors), size)]
    by_coarse: dict[str, list[int]] = {}
    for a in anchors:
        if relatives[a][0] is not None:
            by_coarse.setdefault(relatives[a][0], []).append(a)
    chunks = []
    for rows in by_coarse.values():
        if len({groups[a] for a in rows}) > 1:
            whole = len(rows) - len(rows) % size
            chunks += [rows[i: i + size] for i in range(0, whole, size)]
    taken = {a for c in chunks for a in c}
    rest = [a for a in anchors if a not in taken]
    return chunks + [rest[i: i + size] for i in range(0, len(rest), size)]


def batches_for_step(step: int, rows: int, config: TrainConfig, lengths: np.ndarray | None = None,
                     groups: tuple[str | None, ...] | None = None,
                     relatives: tuple[tuple[str | None, str | None], ...] | None = None) -> list[np.ndarray]:
    """Row indices of each micro-batch of optimizer step `step` (0-based), epochs wrapping.

    `lengths` (tokens per row) is used only when the config groups by length, `groups` only when it
    has a contrastive term."""
    per_step = config.batch_size * config.grad_accum
    if config.contrastive_weight:
        if groups is None:
            raise TrainingError("contrastive_weight needs the rows' groups (a `group` column in the training data)")
        merge = config.contrastive_coarse_merge
        plan = paired_steps(groups, config.seed, 0, per_step, relatives, merge)
        epoch, within = divmod(step, len(plan))
        chunk = paired_steps(groups, config.seed, epoch, per_step, relatives, merge)[within]
    else:
        per_epoch = math.ceil(rows / per_step)
        epoch, within = divmod(step, per_epoch)
        if config.group_by_length and lengths is None:
            raise TrainingError("group_by_length needs the rows' token lengths")
        order = epoch_order(rows, config.seed, epoch, lengths if config.group_by_length else None, per_step)
        chunk = order[within * per_step: (within + 1) * per_step]
    return [chunk[i: i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]


def step_temperature(config: TrainConfig, rows: np.ndarray,
                     relatives: tuple[tuple[str | None, str | None], ...] | None) -> float:
    """The contrastive temperature of one step: a coarse question's merge step may have its own."""
    if config.contrastive_coarse_temperature is not None and asks_a_coarse_question(rows, relatives):
        return config.contrastive_coarse_temperature
    return config.contrastive_temperature


def answer_loss(model, batch: dict[str, torch.Tensor], bf16: bool, pooling: Pooling) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (the same value as the model's own loss).

    A decoder projects onto the vocabulary only at the positions that predict an
    answer token: over every prompt position that projection and its softmax were
    about a quarter of a step's work (49k-token vocabulary, 576-wide model).
    """
    return answer_loss_and_states(model, batch, bf16, pooling, states=False)[0]


def answer_loss_and_states(model, batch: dict[str, torch.Tensor], bf16: bool, pooling: Pooling,
                           states: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The answer loss and, with `states`, each row's embedding as the engine takes it.

    A decoder's embedding is the last layer's (normed) state at the last prompt token, the one
    that predicts the answer's first token; a masked LM's is the mean state of its <mask> slots.
    """
    labels = batch["labels"]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if pooling.reads_mask_slots:
            out = model(**batch, output_hidden_states=states)
            loss = out.loss
            if not states:
                return loss, None
            return loss, pooling.pool(out.hidden_states[-1], slots=labels != IGNORE).float()
        predicts = torch.zeros_like(labels, dtype=torch.bool)
        predicts[:, :-1] = labels[:, 1:] != IGNORE  # position t predicts token t + 1
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    logits_to_keep=predicts, output_hidden_states=states)
    targets = labels[:, 1:][predicts[:, :-1]]
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), targets)
    if not states:
        return loss, None
    last_prompt = (labels != IGNORE).int().argmax(dim=1) - 1
    return loss, pooling.pool(out.hidden_states[-1], last_positions=last_prompt).float()


def contrastive_loss(states: torch.Tensor, groups: list[str | None], temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) over cosine similarities: each row that has
    another of its group in the batch is pulled to it and pushed from the batch's other rows."""
    z = torch.nn.functional.normalize(states, dim=-1)
    n = len(groups)
    self_pair = torch.eye(n, dtype=torch.bool)
    same = torch.tensor([[g is not None and g == h for h in groups] for g in groups]) & ~self_pair
    anchors = same.any(dim=1)
    if not bool(anchors.any()):
        return states.sum() * 0.0
    logits = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_anchor = -log_prob.masked_fill(~same, 0.0).sum(dim=1) / same.sum(dim=1).clamp(min=1)
    return per_anchor[anchors].mean()


def validation_loss(model, examples: list[Example], pad_id: int, config: TrainConfig, bf16: bool,
                    pooling: Pooling) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), config.batch_size):
            chunk = examples[i: i + config.batch_size]
            batch = collate(chunk, pad_id)
            targets = int((batch["labels"] != IGNORE).sum())
            total += float(answer_loss(model, batch, bf16, pooling)) * targets
            count += targets
    model.train()
    return total / max(count, 1)


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train (or continue) and export the result; returns the exported folder."""
    if config.threads:
        torch.set_num_threads(config.threads)
    bf16 = cpu_bf16_or_fp32(config.bf16, "training bf16")  # the config (and so the run's identity) is unchanged
    if bf16 != config.bf16:
        log.warning("bf16: this CPU has no native bf16 units; training in fp32 (bf16 would be far slower here)")
    torch.manual_seed(config.seed)
    out = Path(config.out)
    rows = read_rows(config.train)
    val_rows = read_rows(config.validation).slice(0, config.validation_rows) if config.validation else None
    loaded = load_model(config.model or ZERO_SHOT_MODEL, dtype="float32", device="cpu")
    tokenizer, pooling = loaded.tokenizer, loaded.pooling
    pad_id = int(tokenizer.pad_token_id)
    examples = [encode_example(tokenizer, pooling, r["input"], r["instruction"], r["answer"], config)
                for r in rows.select(["input", "instruction", "answer"]).to_pylist()]
    val_examples = [encode_example(tokenizer, pooling, r["input"], r["instruction"], r["answer"], config)
                    for r in val_rows.select(["input", "instruction", "answer"]).to_pylist()] if val_rows else []
    lengths = np.array([len(e.input_ids) for e in examples])
    groups = row_groups(rows, config)
    relatives = row_relatives(rows, groups) if groups and config.contrastive_hard_pairs else None
    model = prepare_model(loaded.model, config, pooling)
    if config.init_from:
        _load_trainable(Path(config.init_from), model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = total_steps(len(examples), config, groups, relatives)
    from transformers import get_cosine_schedule_with_warmup

    full_steps = total_steps(len(examples), config.model_copy(update={"max_steps": None}), groups, relatives)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * full_steps), full_steps)
    identity = {"config": config.identity(), "data": data_digest(rows), "base": loaded.weights_digest}
    state = TrainState(0, steps, [])
    checkpoint = out / "checkpoint"
    if resume and checkpoint.exists():
        state = _load_checkpoint(checkpoint, model, optimizer, scheduler, identity)
        log.info("resuming at step %d of %d", state.step, steps)
    elif checkpoint.exists() and not resume:
        raise TrainingError(f"{checkpoint} exists: pass --resume to continue that run, or choose another --out")
    bar = tqdm(total=steps, initial=state.step, disable=not config.progress, desc="training", unit="step")
    first_step = state.step
    started = time.perf_counter()
    while state.step < steps:
        optimizer.zero_grad(set_to_none=True)
        micro = batches_for_step(state.step, len(examples), config, lengths, groups, relatives)
        targets = sum(sum(1 for t in examples[int(i)].labels if t != IGNORE) for b in micro for i in b)
        step_loss, step_contrast = 0.0, 0.0
        for b in micro:
            batch = collate([examples[int(i)] for i in b], pad_id)
            share = int((batch["labels"] != IGNORE).sum()) / max(targets, 1)  # token-weighted over the step
            loss, states = answer_loss_and_states(model, batch, bf16, pooling, states=bool(config.contrastive_weight))
            loss = loss * share
            step_loss += loss.detach().item()
            if states is not None:
                contrast = contrastive_loss(states, [groups[int(i)] for i in b], step_temperature(config, b, relatives))
                contrast = contrast * config.contrastive_weight / len(micro)
                step_contrast += contrast.detach().item()
                loss = loss + contrast
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        state.step += 1
        record = {"step": state.step, "loss": round(step_loss, 5), "lr": scheduler.get_last_lr()[0]}
        if config.contrastive_weight:
            record["contrastive_loss"] = round(step_contrast, 5)
        if val_examples and (state.step % config.eval_every == 0 or state.step == steps):
            record["validation_loss"] = round(validation_loss(model, val_examples, pad_id, config, bf16, pooling), 5)
        state.history.append(record)
        bar.set_postfix({k: v for k, v in record.items() if k in ("loss", "contrastive_loss", "validation_loss")})
        bar.update(1)
        if state.step % config.checkpoint_every == 0 or state.step == steps:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, state, identity)
    bar.close()
    log.info(f"trained steps {first_step + 1}-{steps} of {steps} in {time.perf_counter() - started:.0f}s"
             if state.step > first_step else f"all {steps} steps were already done; exporting")
    return export(model, config, state, identity, loaded.name)


def row_groups(rows: pa.Table, config: TrainConfig) -> tuple[str | None, ...] | None:
    """Each row's label group, for the contrastive term (None when the config has none)."""
    if not config.contrastive_weight:
        return None
    if "group" not in rows.column_names:
        raise TrainingError("contrastive_weight needs a `group` column in the training data (rows of one label "
                            "share it; `inbedder train-data` writes it): rebuild the data or set contrastive_weight 0")
    if config.batch_size % 2:
        raise TrainingError("contrastive_weight pairs rows within a batch: batch_size must be even")
    groups = tuple(g if isinstance(g, str) and g else None for g in rows.column("group").to_pylist())
    if not any(groups):
        raise TrainingError("contrastive_weight: no training row has a group")
    return groups


def row_relatives(rows: pa.Table, groups: tuple[str | None, ...]) -> tuple[tuple[str | None, str | None], ...]:
    """Each row's text's group under the nearest coarser and the nearest finer question of its source.

    A question kind is a group's prefix ('sgd-area'); its source is the kind's first word ('sgd'). One
    kind is coarser than another of its source when it has fewer distinct groups (20 areas, 46 intents).
    """
    kind_of = [g.split(":", 1)[0] if g else None for g in groups]
    labels: dict[str, set[str]] = {}
    by_text: dict[tuple[str, str], dict[str, str]] = {}
    for text, kind, group in zip(rows.column("input").to_pylist(), kind_of, groups, strict=True):
        if kind is not None:
            labels.setdefault(kind, set()).add(group)
            by_text.setdefault((kind.split("-", 1)[0], text), {})[kind] = group
    width = {kind: len(found) for kind, found in labels.items()}
    relatives = []
    for text, kind in zip(rows.column("input").to_pylist(), kind_of, strict=True):
        if kind is None:
            relatives.append((None, None))
            continue
        others = {k: g for k, g in by_text[(kind.split("-", 1)[0], text)].items() if k != kind}
        coarser = [k for k in others if width[k] < width[kind]]
        finer = [k for k in others if width[k] > width[kind]]
        relatives.append((others[max(coarser, key=width.get)] if coarser else None,
                          others[min(finer, key=width.get)] if finer else None))
    return tuple(relatives)


def _load_trainable(folder: Path, model: torch.nn.Module) -> None:
    """Start from an earlier run's trainable weights (its checkpoint folder, the run's folder, or an adapter)."""
    from safetensors.torch import load_file

    if (folder / "adapter_config.json").is_file():
        _load_adapter(folder, model)
        return
    file = next((f for f in (folder / "trainable.safetensors", folder / "checkpoint" / "trainable.safetensors")
                 if f.is_file()), None)
    if file is None:
        raise TrainingError(f"init_from: {folder} holds no trainable.safetensors or adapter_config.json "
                            "(give a run's checkpoint folder or an exported adapter)")
    _copy_into(model, load_file(file), file)


def _load_adapter(folder: Path, model: torch.nn.Module) -> None:
    """An exported LoRA adapter (a soup included) as the start: its update becomes the trainable LoRA's."""
    from peft import PeftModel
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    from inbedder.engine.loading import is_plain_lora

    if not isinstance(model, PeftModel):
        raise TrainingError(f"init_from: {folder} is a LoRA adapter; train it with method: lora")
    own = model.peft_config["default"]
    config = json.loads((folder / "adapter_config.json").read_text())
    if not is_plain_lora(config):
        raise TrainingError(f"init_from: {folder} is not a plain LoRA adapter")
    if (int(config["r"]), float(config["lora_alpha"])) != (own.r, float(own.lora_alpha)):
        raise TrainingError(f"init_from: {folder} has rank {config['r']} and alpha {config['lora_alpha']}: "
                            f"set lora_r: {config['r']} and lora_alpha: {config['lora_alpha']} to continue it")
    file = folder / "adapter_model.safetensors"
    result = set_peft_model_state_dict(model, load_file(file))
    lora_missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or lora_missing:
        raise TrainingError(f"init_from: {file} adapts other modules than this run "
                            f"({len(result.unexpected_keys)} unknown, {len(lora_missing)} missing tensors)")
    log.info("started from the adapter in %s", folder)


def _copy_into(model: torch.nn.Module, weights: dict[str, torch.Tensor], file: Path) -> None:
    named = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(named))
    missing = sorted(n for n, p in named.items() if p.requires_grad and n not in weights)
    if unknown or missing:
        raise TrainingError(f"init_from: {file} was trained with another method or base "
                            f"({len(unknown)} unknown, {len(missing)} missing tensors)")
    with torch.no_grad():
        for name, tensor in weights.items():
            named[name].copy_(tensor)
    log.info("started from the weights in %s", file)


def _save_checkpoint(folder: Path, model, optimizer, scheduler, state: TrainState, identity: dict) -> None:
    """Written beside, then swapped in: a kill mid-write leaves the previous checkpoint whole."""
    from safetensors.torch import save_file

    def fill(fresh: Path) -> None:
        save_file(trainable_state(model), fresh / "trainable.safetensors")
        tensors, plain = _optimizer_state(optimizer, scheduler)
        save_file(tensors, fresh / "optimizer.safetensors")
        (fresh / "optimizer.json").write_text(json.dumps(plain))
        (fresh / "state.json").write_text(json.dumps({"step": state.step, "total_steps": state.total_steps,
                                                      "history": state.history, "identity": identity}, indent=1))

    replace_folder(folder, fill)


def _load_checkpoint(folder: Path, model, optimizer, scheduler, identity: dict) -> TrainState:
    from safetensors.torch import load_file

    saved = json.loads((folder / "state.json").read_text())
    if saved["identity"] != identity:
        changed = sorted(k for k in identity["config"] if saved["identity"]["config"].get(k) != identity["config"][k])
        what = changed or [k for k in ("data", "base") if saved["identity"][k] != identity[k]]
        raise TrainingError(f"the checkpoint in {folder} was made with other settings ({', '.join(what)}): "
                            "resuming would not reproduce one uninterrupted run")
    weights = load_file(folder / "trainable.safetensors")
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            named[name].copy_(tensor)
    if (folder / "optimizer.safetensors").is_file():
        optimizer_state, scheduler_state = _restore_optimizer_state(load_file(folder / "optimizer.safetensors"),
                                                                    json.loads((folder / "optimizer.json").read_text()))
    else:  # a checkpoint of an earlier version: tensors and numbers only, so the safe loader reads it
        blob = torch.load(folder / "optimizer.pt", weights_only=True)
        optimizer_state, scheduler_state = blob["optimizer"], blob["scheduler"]
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    return TrainState(saved["step"], saved["total_steps"], saved["history"])


def _optimizer_state(optimizer, scheduler) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer's tensors (for safetensors) and everything else (for JSON): no pickle is written."""
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value.contiguous() for index, slots in state["state"].items()
               for name, value in slots.items() if torch.is_tensor(value)}
    numbers = {str(index): {name: value for name, value in slots.items() if not torch.is_tensor(value)}
               for index, slots in state["state"].items()}
    return tensors, {"state": numbers, "param_groups": state["param_groups"], "scheduler": scheduler.state_dict()}


def _restore_optimizer_state(tensors: dict[str, torch.Tensor], plain: dict) -> tuple[dict, dict]:
    state: dict[int, dict] = {int(index): dict(numbers) for index, numbers in plain["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}, plain["scheduler"]


def export(model, config: TrainConfig, state: TrainState, identity: dict, base_name: str) -> Path:
    """The shippable result: a LoRA adapter (peft format) or the trained tensors, plus a record."""
    folder = Path(config.out) / "adapter"
    validation = [h["validation_loss"] for h in state.history if "validation_loss" in h]
    replace_folder(folder, lambda fresh: _write_adapter(fresh, model, config, state, identity, base_name, validation))
    return folder


def _write_adapter(folder: Path, model, config: TrainConfig, state: TrainState, identity: dict, base_name: str,
                   validation: list[float]) -> None:
    from safetensors.torch import save_file

    if config.method == "lora":
        model.save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        peft_config = json.loads((folder / "adapter_config.json").read_text())
        peft_config["base_model_name_or_path"] = base_name  # not this machine's cache path
        (folder / "adapter_config.json").write_text(json.dumps(peft_config, indent=2))
    else:
        save_file(trainable_state(model), folder / TRAINED_WEIGHTS)
    (folder / ADAPTER_RECORD).write_text(json.dumps({
        "base_model": base_name, "base_weights": identity["base"], "method": config.method,
        "steps": state.step, "data": identity["data"], "config": config.identity(),
        "final_loss": state.history[-1]["loss"] if state.history else None,
        "final_validation_loss": validation[-1] if validation else None}, indent=1))
