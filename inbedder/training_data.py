"""Training rows for the paper's recipe, built from ../shared/data.

InBedder learns to give short answers to questions about a text; its vectors then
follow the question. Rows are (input, instruction, answer):

- QA sets with a passage and a short answer (SQuAD train, TweetQA, ROPES, QASC,
  CosmosQA, BoolQ, FairytaleQA), answers of at most `max_answer_words` words;
- labelled corpora turned into questions whose short answer is the label in
  words, each asked in several phrasings: Banking77 (what the customer wants;
  which area of banking: a coarse grouping of its 77 intents made here) and
  GoEmotions (how the writer feels).
- with `coarse_facets`: coarse labels over the fine ones on the same texts
  (GoEmotions' Ekman groups and sentiments, Banking77 areas, SQuAD article
  titles as passage topics), half of them asked with "such as a, b or c" hints
  drawn from the label set.
- with `subject_facet`: one broad subject per SQuAD article (the nearest of
  `SUBJECTS` under all-MiniLM-L6-v2: labels made here, noisy) asked of the
  article's *questions*, so many different short requests share one coarse
  answer from an open, 20-word vocabulary. The generic "which area / domain"
  phrasings then belong to this facet; banking-area rows keep only phrasings
  that name the bank (generic ones taught the model to answer "account and
  security" to any area question: bench/coarse_facets.py).

Kept out, so evaluation stays honest: every file the evaluation harness reads
(MASSIVE, CLINC, MTOP, FewRel, Few-NERD, STS-B) - no text and no label of them.
SQuAD dev is the validation split; XQuAD (a SQuAD dev subset) and NQ-open (no
passages) are not used for training either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
# --coarse-facets: coarse labels over fine ones on the same texts, so "which area / which kind"
# questions learn to group what "what exactly" questions keep apart
EMOTION_GROUP_QUESTIONS = ("Which basic emotion does this show", "What kind of feeling is this",
                           "Which broad emotion does the writer express")
SENTIMENT_QUESTIONS = ("Is the feeling positive, negative or ambiguous?", "What is the overall sentiment?",
                       "Is this comment positive or negative?")
AREA_HINT_QUESTIONS = ("Which area of banking is this about", "Which service area does this request concern",
                       "Which part of the bank is this about")
TOPIC_QUESTIONS = ("What is this passage about", "Which subject is this text about",
                   "What is the topic of this passage")
# --subject-facet: broad subjects for SQuAD articles, each described for the embedder that picks one;
# a general encyclopedia-style list, not the evaluation sets' domains
SUBJECTS = {
    "music": "music, songs, singers, bands, albums and musical instruments",
    "film and television": "films, movies, actors, television series and broadcasting",
    "sports": "sports, athletes, teams, games, tournaments and championships",
    "history": "history, empires, ancient civilisations, dynasties and historical events",
    "geography": "a country, a city, a region, its population, climate and landmarks",
    "science": "physics, chemistry, biology, astronomy, mathematics and scientific theories",
    "technology": "computers, software, the internet, electronics, engineering and inventions",
    "politics": "politics, government, elections, political parties and international relations",
    "religion": "religion, churches, gods, faith, scripture and religious practice",
    "literature": "books, novels, poetry, writers and languages",
    "business": "companies, the economy, trade, banking and industry",
    "medicine": "medicine, diseases, health, the human body and treatment",
    "food": "food, drink, cooking and cuisine",
    "law": "law, courts, legal rights, constitutions and crime",
    "war": "wars, battles, armies, weapons and the military",
    "education": "universities, schools, students and education",
    "art": "art, painting, sculpture and architecture",
    "nature": "animals, plants, ecosystems and the natural environment",
    "transport": "transport, cars, railways, aircraft and ships",
    "philosophy": "philosophy, ideas, ethics and schools of thought",
}
SUBJECT_QUESTIONS = ("Which domain is this question about", "What general subject is this request about",
                     "Which area of knowledge does this belong to", "What field is this about")
BANK_NAMED_AREA_QUESTIONS = tuple(q for q in BANKING_AREA_QUESTIONS if "bank" in q)
BANK_NAMED_AREA_HINT_QUESTIONS = tuple(q for q in AREA_HINT_QUESTIONS if "bank" in q)
# GoEmotions' own groupings (Demszky et al., 2020): Ekman's six emotions and three sentiments
EMOTION_GROUPS = {
    "anger": ("anger", "annoyance", "disapproval"), "disgust": ("disgust",), "fear": ("fear", "nervousness"),
    "joy": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief", "pride",
            "admiration", "desire", "caring"),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity")}
SENTIMENTS = {"positive": ("amusement", "excitement", "joy", "love", "desire", "optimism", "caring", "pride",
                           "admiration", "gratitude", "relief", "approval"),
              "negative": ("fear", "nervousness", "remorse", "embarrassment", "disappointment", "sadness", "grief",
                           "disgust", "anger", "annoyance", "disapproval"),
              "ambiguous": ("realization", "surprise", "curiosity", "confusion")}

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
    coarse_facets: bool = False     # add the coarse-over-fine rows (emotion groups, sentiment, hinted areas, topics)
    subject_facet: bool = False     # add broad subjects of SQuAD questions; area questions name the bank
    subject_rows: int = 1500


Embed = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised vectors


def group_of(label: str, groups: dict[str, tuple[str, ...]]) -> str:
    return next(g for g, members in groups.items() if label in members)


def hinted(stem: str, answer: str, choices: list[str], rng: np.random.Generator) -> str:
    """"STEM, such as a, b or c?": examples drawn from the label set, the right one only sometimes,
    so the model learns to pick the category the text belongs to rather than copy the list."""
    others = [c for c in choices if c != answer]
    if len(others) < 3:
        raise ValueError(f"a hinted question needs at least 4 labels to draw examples from, got {len(choices)}")
    picked = [others[int(i)] for i in rng.choice(len(others), 3, replace=False)]
    if rng.random() < 0.5:
        picked[int(rng.integers(3))] = answer
    return f"{stem}, such as {picked[0]}, {picked[1]} or {picked[2]}?"


def _hinted_rows(texts: list[str], answers: list[str], stems: Iterable[str], name: str, k: int,
                 rng: np.random.Generator) -> list[dict]:
    stems, choices = list(stems), sorted(set(answers))
    rows = []
    for i in _sample(len(texts), k, rng):
        stem = stems[int(rng.integers(len(stems)))]
        question = hinted(stem, answers[int(i)], choices, rng) if rng.random() < 0.6 else stem + "?"
        rows.append({"input": texts[int(i)], "instruction": question, "answer": answers[int(i)], "source": name})
    return rows


def _coarse_rows(data: Path, options: DataOptions, banking: list[dict], emotions: list[dict],
                 rng: np.random.Generator) -> list[dict]:
    k = options.per_label_question
    feelings = [r for r in emotions if any(r["label"] in m for m in EMOTION_GROUPS.values())]
    texts = [r["text"] for r in feelings]
    rows = _hinted_rows(texts, [group_of(r["label"], EMOTION_GROUPS) for r in feelings], EMOTION_GROUP_QUESTIONS,
                        "goemotions-group", k, rng)
    rows += _labelled_rows(texts, [group_of(r["label"], SENTIMENTS) for r in feelings], SENTIMENT_QUESTIONS,
                           "goemotions-sentiment", k, rng)
    area_stems = BANK_NAMED_AREA_HINT_QUESTIONS if options.subject_facet else AREA_HINT_QUESTIONS
    rows += _hinted_rows([r["text"] for r in banking], [banking_area(r["category"]) for r in banking],
                         area_stems, "banking77-area-hinted", k, rng)
    squad = pq.read_table(data / QA_FILES["squad"], columns=["context", "title"]).to_pylist()
    unique = list({r["context"]: r for r in squad}.values())
    topics = [r["title"].replace("_", " ") for r in unique]
    keep = [i for i, t in enumerate(topics) if len(t.split()) <= options.max_answer_words]
    rows += _hinted_rows([unique[i]["context"][: options.max_context_chars] for i in keep], [topics[i] for i in keep],
                         TOPIC_QUESTIONS, "squad-topic", k, rng)
    return rows


def article_subjects(titles: Sequence[str], intros: Sequence[str], embed: Embed) -> dict[str, str]:
    """Each article's broad subject: the `SUBJECTS` description nearest to its title and opening."""
    docs = embed([f"{t.replace('_', ' ')}. {intro[:400]}" for t, intro in zip(titles, intros, strict=True)])
    anchors = embed([f"An article about {description}." for description in SUBJECTS.values()])
    names = list(SUBJECTS)
    return {t: names[int(i)] for t, i in zip(titles, (docs @ anchors.T).argmax(axis=1), strict=True)}


def _subject_rows(data: Path, options: DataOptions, embed: Embed, rng: np.random.Generator) -> list[dict]:
    squad = pq.read_table(data / QA_FILES["squad"], columns=["title", "context", "question"]).to_pylist()
    intros: dict[str, str] = {}
    for r in squad:
        intros.setdefault(r["title"], r["context"])
    subjects = article_subjects(list(intros), list(intros.values()), embed)
    questions = [r for r in squad if r["question"] and r["question"].strip()]
    return _hinted_rows([r["question"].strip() for r in questions], [subjects[r["title"]] for r in questions],
                        SUBJECT_QUESTIONS, "squad-question-subject", options.subject_rows, rng)


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


def build_training_rows(data_dir: str | Path, options: DataOptions | None = None,
                        embed: Embed | None = None) -> tuple[pa.Table, pa.Table]:
    """(train, validation) tables with input, instruction, answer, source; seeded, shuffled.

    `embed` labels SQuAD articles' subjects (`subject_facet`); all-MiniLM-L6-v2 when not given."""
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
    rows += _labelled_rows(texts, [banking_area(r["category"]) for r in banking],
                           BANK_NAMED_AREA_QUESTIONS if options.subject_facet else BANKING_AREA_QUESTIONS,
                           "banking77-area", options.per_label_question, rng)
    emotions = pq.read_table(data / "clustering/go_emotion.large.parquet").to_pylist()
    rows += _labelled_rows([r["text"] for r in emotions], [label_words(r["label"]) for r in emotions],
                           EMOTION_QUESTIONS, "goemotions", options.per_label_question, rng)
    if options.coarse_facets:
        rows += _coarse_rows(data, options, banking, emotions, rng)
    if options.subject_facet:
        if embed is None:
            from inbedder.baselines import MiniLM

            embed = MiniLM().encode
        rows += _subject_rows(data, options, embed, rng)
    order = rng.permutation(len(rows))
    train = pa.Table.from_pylist([rows[int(i)] for i in order])
    validation = pa.Table.from_pylist(_qa_rows(data / VALIDATION_FILE, "squad-dev",
                                               DataOptions(**{**options.__dict__,
                                                              "per_qa_source": options.validation_rows}), rng))
    return train, validation


def used_files() -> list[str]:
    """Every data file a training set is built from (checked against EVALUATION_ONLY by the tests)."""
    return [*QA_FILES.values(), VALIDATION_FILE, "banking77/train.parquet", "clustering/go_emotion.large.parquet"]
