"""Training rows for the paper's recipe, built from ../shared/data.

InBedder learns to give short answers to questions about a text; its vectors then
follow the question. Rows are (input, instruction, answer):

- QA sets with a passage and a short answer (SQuAD train, TweetQA, ROPES, QASC,
  CosmosQA, BoolQ, FairytaleQA), answers of at most `max_answer_words` words;
- labelled corpora turned into questions whose short answer is the label in
  words, each asked in several phrasings: Banking77 (what the customer wants;
  which area of banking: a coarse grouping of its 77 intents made here) and
  GoEmotions (how the writer feels).

Kept out, so evaluation stays honest: every file the evaluation harness reads
(MASSIVE, CLINC, MTOP, FewRel, Few-NERD, STS-B) - no text and no label of them.
SQuAD dev is the validation split; XQuAD (a SQuAD dev subset) and NQ-open (no
passages) are not used for training either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

QA_FILES = {  # dataset -> file under data_dir (context, question, answer columns)
    "squad": "qa/squad_v11_train.parquet",
    "tweetqa": "qa/tweetqa.parquet",
    "ropes": "qa/ropes.parquet",
    "qasc": "qa/qasc_ni.parquet",
    "cosmosqa": "qa/cosmosqa_ni.parquet",
    "boolq": "qa/boolq_dev.parquet",
    "fairytaleqa": "qa/fairytaleqa.parquet",
}
VALIDATION_FILE = "qa/squad_v11_dev.parquet"
EVALUATION_ONLY = ("clustering/massive_", "clustering/clinc_", "clustering/mtop_", "clustering/few_rel_",
                   "clustering/few_nerd_", "stsb/", "inbedder_instructions/")

BANKING_INTENT_QUESTIONS = (
    "What does the customer want?",
    "What is the customer asking the bank to do?",
    "What is the purpose of this message?",
    "What does the user need help with?",
    "What is the intent of this request?",
)
BANKING_AREA_QUESTIONS = (
    "Which area of banking is this about?",
    "What part of the bank's service does this concern?",
    "Which product or service is this message about?",
    "What general topic does this request fall under?",
)
EMOTION_QUESTIONS = (
    "How does the writer feel?",
    "What emotion does this text express?",
    "What is the mood of the author?",
    "Which feeling comes through in this comment?",
)
# a coarse facet over Banking77's intents: the first rule whose words occur in the intent name wins
BANKING_AREAS = (
    (("top_up", "topping_up"), "top up"),
    (("cash_withdrawal", "atm", "cash_received"), "cash withdrawal"),
    (("transfer", "beneficiary", "receiving_money"), "bank transfer"),
    (("exchange", "currenc", "fiat"), "currency exchange"),
    (("verify", "identity", "personal_details", "passcode", "terminate", "age_limit", "phone", "country"),
     "account and security"),
    (("refund", "charged_twice", "extra_charge", "direct_debit", "balance", "cheque"), "payments and balance"),
    (("card", "pin", "contactless", "visa", "apple_pay"), "card"),
)


@dataclass(frozen=True)
class DataOptions:
    max_answer_words: int = 8
    per_qa_source: int = 3000       # rows sampled from each QA set
    per_label_question: int = 1500  # rows sampled per labelled corpus and question kind
    validation_rows: int = 300
    max_context_chars: int = 1200   # long passages cost CPU time; the answer must stay inside
    seed: int = 0


def banking_area(intent: str) -> str:
    for words, area in BANKING_AREAS:
        if any(w in intent.lower() for w in words):
            return area
    return "other"


def label_words(label: str) -> str:
    return label.replace("_", " ").replace("?", "").strip().lower()


def _short(answer: object, max_words: int) -> bool:
    return isinstance(answer, str) and 0 < len(answer.split()) <= max_words


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, min(n, k), replace=False))


def _qa_rows(path: Path, name: str, options: DataOptions, rng: np.random.Generator) -> list[dict]:
    table = pq.read_table(path, columns=["context", "question", "answer"]).to_pylist()
    usable = [r for r in table if _short(r["answer"], options.max_answer_words) and r["context"]
              and r["question"]]
    out = []
    for i in _sample(len(usable), options.per_qa_source, rng):
        r = usable[int(i)]
        context = r["context"]
        if len(context) > options.max_context_chars:
            at = context.find(r["answer"])
            if at < 0 or at + len(r["answer"]) > options.max_context_chars:
                continue  # truncation would cut the answer out of the passage
            context = context[: options.max_context_chars]
        out.append({"input": context, "instruction": r["question"], "answer": r["answer"].strip(), "source": name})
    return out


def _labelled_rows(texts: list[str], answers: list[str], questions: Iterable[str], name: str, k: int,
                   rng: np.random.Generator) -> list[dict]:
    questions = list(questions)
    return [{"input": texts[int(i)], "instruction": questions[int(rng.integers(len(questions)))],
             "answer": answers[int(i)], "source": name} for i in _sample(len(texts), k, rng)]


def build_training_rows(data_dir: str | Path, options: DataOptions | None = None) -> tuple[pa.Table, pa.Table]:
    """(train, validation) tables with input, instruction, answer, source; seeded, shuffled."""
    options = options or DataOptions()
    data = Path(data_dir)
    rng = np.random.default_rng(options.seed)
    rows: list[dict] = []
    for name, file in QA_FILES.items():
        rows += _qa_rows(data / file, name, options, rng)
    banking = pq.read_table(data / "banking77/train.parquet").to_pylist()
    texts = [r["text"] for r in banking]
    rows += _labelled_rows(texts, [label_words(r["category"]) for r in banking], BANKING_INTENT_QUESTIONS,
                           "banking77-intent", options.per_label_question, rng)
    rows += _labelled_rows(texts, [banking_area(r["category"]) for r in banking], BANKING_AREA_QUESTIONS,
                           "banking77-area", options.per_label_question, rng)
    emotions = pq.read_table(data / "clustering/go_emotion.large.parquet").to_pylist()
    rows += _labelled_rows([r["text"] for r in emotions], [label_words(r["label"]) for r in emotions],
                           EMOTION_QUESTIONS, "goemotions", options.per_label_question, rng)
    order = rng.permutation(len(rows))
    train = pa.Table.from_pylist([rows[int(i)] for i in order])
    validation = pa.Table.from_pylist(_qa_rows(data / VALIDATION_FILE, "squad-dev",
                                               DataOptions(**{**options.__dict__,
                                                              "per_qa_source": options.validation_rows}), rng))
    return train, validation


def used_files() -> list[str]:
    """Every data file a training set is built from (checked against EVALUATION_ONLY by the tests)."""
    return [*QA_FILES.values(), VALIDATION_FILE, "banking77/train.parquet", "clustering/go_emotion.large.parquet"]
