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

- with `request_facets`: short requests to assistants and services (SGD, SNIPS,
  NLU++), each asked twice: "which area / kind of service?" (a broad answer in
  words, one of several phrasings per domain) and "what does the user want?" (a
  short intent paraphrase, from the intent's name or SGD's own intent
  description). The same text gets different answers under the two questions:
  granularity is what these rows teach. SGD's dev and test dialogues only
  validate, and the domains in `HELD_OUT_DOMAINS` never enter training: the
  taxonomy-transfer check measures how the coarse question groups them.
- with `breadth_facets`: kinds of question far from topics and requests, so a
  question about form or attitude stops answering with the content: the two
  facet sets whose licence allows a shipped adapter (`TRAINABLE_FACET_SETS`:
  politeness, platform and community of requests; hate / offensive / neither of
  tweets), and "what kind of text is this?" over texts of seven sources, where
  every topic of one source shares one answer (a tweet, an encyclopedia article,
  a fairy tale, ...). Each asked in several phrasings.
- with `question_kinds`: questions about *questions*: the questions of the QA sets above
  asked "what type of answer does this question expect?", answered with the kind of
  answer (a person, a place, a date or time, a number, a reason, a way or method, yes
  or no, a definition, a thing or name). Labels made here from the question's wording
  and the form of its gold answer (`answer_kind`; noisy, ambiguous questions skipped),
  sampled evenly per kind. The few QA questions that a held-out facet set (TREC) also
  holds word for word are left out.

Kept out, so evaluation stays honest: every file the evaluation harness reads
(MASSIVE, CLINC, MTOP, FewRel, Few-NERD, STS-B) - no text and no label of them.
SQuAD dev is the validation split; XQuAD (a SQuAD dev subset) and NQ-open (no
passages) are not used for training either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inbedder.data_splits import HELD_OUT_DOMAINS

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
                   "clustering/few_nerd_", "stsb/", "inbedder_instructions/", "facets/")
# the facet sets whose licence allows training an adapter that ships (facets/README.md: MIT, Apache-2.0);
# the breadth suite scores them apart from the held-out ones
TRAINABLE_FACET_SETS = ("hate_offensive_tweets", "politeness_requests")

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


# --request-facets: the same short request asked about at two granularities
REQUEST_AREA_QUESTIONS = ("Which area is this request about", "What domain does this request belong to",
                          "What kind of service is the user asking about", "Which topic area does this message concern",
                          "What general category does this request fall into")
REQUEST_INTENT_QUESTIONS = ("What does the user want to do?", "What is the user asking for?",
                            "What action is being requested?", "What is the purpose of this request?",
                            "What exactly does the person want?")
# SGD domain -> broad answers in words (the first is the label name used in hints)
SGD_DOMAIN_ANSWERS = {
    "Restaurants": ("restaurants", "dining out", "restaurant booking"),
    "Media": ("streaming media", "watching films online", "video on demand"),
    "Events": ("events", "concerts and games", "event tickets"),
    "Music": ("music", "songs", "listening to music"),
    "Movies": ("movies", "cinema", "film showtimes"),
    "Flights": ("flights", "air travel", "plane tickets"),
    "RideSharing": ("ride sharing", "taxis", "cab rides"),
    "RentalCars": ("car rental", "rental cars", "hiring a car"),
    "Buses": ("buses", "bus travel", "coach trips"),
    "Hotels": ("hotels", "accommodation", "places to stay"),
    "Services": ("appointments", "dentists, doctors and salons", "booking a professional"),
    "Homes": ("housing", "apartments", "renting a home"),
    "Banks": ("banking", "bank accounts", "money"),
    "Calendar": ("calendar", "scheduling", "personal events"),
    "Weather": ("weather", "the forecast", "weather conditions"),
    "Travel": ("travel", "tourist attractions", "sightseeing"),
    "Alarm": ("alarms", "alarm clock", "wake-up alarms"),
    "Payment": ("payments", "sending money", "paying someone"),
    "Messaging": ("messaging", "sending messages", "texting"),
    "Trains": ("trains", "rail travel", "train tickets"),
}
# never trained on: the taxonomy-transfer check groups their requests under the area question
SNIPS_INTENTS = {  # intent -> (broad area, intent paraphrases)
    "PlayMusic": (("music", "songs"), ("play music", "play a song")),
    "AddToPlaylist": (("music", "playlists"), ("add a song to a playlist", "add music to a playlist")),
    "GetWeather": (("weather", "the forecast"), ("get the weather forecast", "check the weather")),
    "BookRestaurant": (("restaurants", "dining out"), ("book a table", "reserve a restaurant")),
    "RateBook": (("books", "reading"), ("rate a book", "give a book a rating")),
    "SearchCreativeWork": (("creative works", "films, books and music"), ("find a creative work",
                                                                           "look up a title")),
    "SearchScreeningEvent": (("movies", "cinema"), ("find movie showtimes", "find a film screening")),
}
NLUPP_DOMAINS = {"banking": ("banking", "bank accounts"), "hotels": ("hotels", "hotel stays")}
# NLU++ intents that say nothing about what is wanted (dialogue acts)
NLUPP_ACTS = {"affirm", "deny", "acknowledge", "greet", "thank", "dont_know", "handoff", "repeat", "wait",
              "end_call", "more_higher_after", "less_lower_before"}


# --breadth-facets: questions about form and attitude, each in several phrasings
POLITENESS_QUESTIONS = ("How polite is this request?", "Is the writer being polite, neutral or rude?",
                        "How courteous is the tone of this message?", "What is the tone of this request?")
POLITENESS_ANSWERS = {"polite": "polite", "neutral": "neutral", "impolite": "impolite"}
PLATFORM_QUESTIONS = ("Was this request made on Wikipedia or on Stack Exchange?", "Which website was this posted on?",
                      "Where was this message written?")
COMMUNITY_QUESTIONS = ("In which online community was this request made?", "Which forum is this message from?",
                       "What community does the writer belong to?")
HATE_QUESTIONS = ("Is the tweet hate speech, offensive but not hateful, or neither?", "How offensive is this tweet?",
                  "Does this tweet use abusive or hateful language?", "Is this message hateful, offensive or fine?")
HATE_ANSWERS = {"hate speech": "hate speech", "offensive language": "offensive", "neither": "neither"}
TEXT_KIND_QUESTIONS = ("What kind of text is this?", "What type of writing is this?",
                       "Where would you find a text like this?", "What form does this text take?")
TEXT_KINDS = {  # kind of text -> (file, column); every topic of a source shares its one answer
    "a tweet": ("qa/tweetqa.parquet", "context"),
    "an encyclopedia article": ("qa/squad_v11_train.parquet", "context"),
    "a fairy tale": ("qa/fairytaleqa.parquet", "context"),
    "a personal story": ("qa/cosmosqa_ni.parquet", "context"),
    "a trivia question": ("qa/squad_v11_train.parquet", "question"),
    "a request to a virtual assistant": ("sgd/sgd_intent_turns.parquet", "text"),
    "a message to a bank": ("banking77/train.parquet", "text"),
}


# --question-kinds: what kind of answer a question asks for; never the breadth suite's own phrasing
ANSWER_KIND_QUESTIONS = ("What type of answer does this question expect",  # stems: "?" or a hint is added
                         "What sort of information is this question looking for",
                         "Which kind of answer would fit this question",
                         "What is the question trying to find out")
_WH_WORDS = ("who", "whom", "whose", "who's", "where", "when", "why", "how", "what", "which")
_AUXILIARIES = ("is", "are", "was", "were", "does", "do", "did", "can", "could", "will", "would", "should", "has",
                "have", "had")
_PLACE_NOUNS = ("country", "city", "state", "town", "continent", "river", "island", "region", "province", "county",
                "nation", "location", "place", "capital", "street", "mountain", "ocean", "lake", "village", "area")
_TIME_NOUNS = ("year", "month", "day", "date", "time", "century", "decade", "period", "era", "season", "age")
_AMOUNT_NOUNS = ("percentage", "percent", "number", "amount", "proportion", "size", "length", "population",
                 "distance", "temperature", "speed", "price", "cost", "height", "weight", "rate", "total")
_HOW_AMOUNTS = ("many", "much", "long", "far", "old", "big", "tall", "large", "high", "often", "fast", "heavy",
                "deep", "wide", "small", "few")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")


def answer_kind(question: str, answer: str) -> str | None:
    """The kind of answer a question asks for, from its wording and its gold answer's form; None when unclear.

    The wh-word decides where it says enough (who, where, when, why, how many); "what" and "which"
    questions take the noun after them (what year, which city) or, failing that, the answer's form."""
    words = re.findall(r"[a-z0-9']+", question.lower())
    if not words:
        return None
    if words[0] in _AUXILIARIES and answer.strip().lower() in ("yes", "no"):
        return "yes or no"
    at = next((i for i, w in enumerate(words) if w in _WH_WORDS), None)
    if at is None:
        return None
    wh, after = words[at], words[at + 1: at + 3]
    if wh in ("who", "whom", "whose", "who's"):
        return "a person"
    if wh == "where":
        return "a place"
    if wh == "when":
        return "a date or time"
    if wh == "why":
        return "a reason"
    if wh == "how":
        if after and after[0] in _HOW_AMOUNTS:
            return "a number"
        return "a way or method" if after and after[0] in ("do", "does", "did", "can", "could", "is", "was", "are",
                                                            "were", "would", "should") else None
    # what / which: the noun that follows, then the answer's form
    nouns = after + [w[:-1] for w in after if w.endswith("s")]  # which cities -> city
    if any(n in _PLACE_NOUNS for n in nouns):
        return "a place"
    if any(n in _TIME_NOUNS for n in nouns):
        return "a date or time"
    if any(n in _AMOUNT_NOUNS for n in nouns):
        return "a number"
    if after and after[0] in ("does", "do") and "stand" in words and "for" in words:
        return "the meaning of an abbreviation"
    text = answer.strip().lower()
    if re.fullmatch(r"(in |on |by |around |about )?(\d{3,4}s?|\d{1,2}(st|nd|rd|th)? century)", text) or (
            any(m in text.split() for m in _MONTHS) and re.search(r"\d", text)):
        return "a date or time"
    if re.fullmatch(r"(about |around |over |nearly |approximately )?[$£€]?[\d,.]+( ?%| percent| million| billion)?",
                    text):
        return "a number"
    if after[:1] in (["is"], ["are"], ["was"], ["were"]) and len(words) - at <= 6:
        return "a definition"
    if len(text.split()) <= 4 and not re.search(r"\d", text):
        return "a thing or name"
    return None


def split_camel(name: str) -> str:
    """`SearchOnewayFlight` -> `search oneway flight`."""
    return " ".join(w.lower() for w in re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name))


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
    request_facets: bool = False    # add SGD / SNIPS / NLU++ requests under an area and an intent question
    per_request_source: int = 6000  # SGD texts (SNIPS, NLU++: a third); each gives an area and an intent row
    request_validation_rows: int = 300
    breadth_facets: bool = False    # add politeness / platform / community, hate-offensive and kind-of-text rows
    per_breadth_question: int = 300  # rows per breadth question kind (kind of text: per kind / 4)
    question_kinds: bool = False    # add "what type of answer does this question expect?" over QA questions
    per_question_kind: int = 200    # rows per kind of answer (fewer where a kind has fewer questions)


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
        rows.append({"input": texts[int(i)], "instruction": question, "answer": answers[int(i)], "source": name,
                     "group": f"{name}:{answers[int(i)]}"})
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


def _request_pair(text: str, areas: Sequence[str], intents: Sequence[str], all_areas: list[str], name: str,
                  rng: np.random.Generator, labels: tuple[str, str]) -> list[dict]:
    """One text, two rows: a broad area (sometimes asked with examples) and what the user wants.

    `labels` (area, intent) name the answers' groups: every phrasing of one area is one group."""
    area = areas[int(rng.integers(len(areas)))]
    stem = REQUEST_AREA_QUESTIONS[int(rng.integers(len(REQUEST_AREA_QUESTIONS)))]
    asked = hinted(stem, areas[0], all_areas, rng) if rng.random() < 0.4 else stem + "?"
    if "such as" in asked:
        area = areas[0]  # the answer is named as the hints name it
    intent = intents[int(rng.integers(len(intents)))]
    question = REQUEST_INTENT_QUESTIONS[int(rng.integers(len(REQUEST_INTENT_QUESTIONS)))]
    return [{"input": text, "instruction": asked, "answer": area, "source": f"{name}-area",
             "group": f"{name}-area:{labels[0]}"},
            {"input": text, "instruction": question, "answer": intent, "source": f"{name}-intent",
             "group": f"{name}-intent:{labels[1]}"}]


def sgd_intent_answers(row: dict, max_words: int) -> tuple[str, ...]:
    """The intent's own name in words, and SGD's description of it when short enough."""
    answers = [split_camel(row["intent"])]
    description = (row.get("intent_description") or "").strip().rstrip(".")
    if description and len(description.split()) <= max_words:
        answers.append(description[0].lower() + description[1:])
    return tuple(answers)


def _sgd_rows(data: Path, options: DataOptions, rng: np.random.Generator, split: str, k: int) -> list[dict]:
    table = pq.read_table(data / "sgd/sgd_intent_turns.parquet").to_pylist()
    usable = [r for r in table if r["split"] == split and r["domain"] not in HELD_OUT_DOMAINS and r["text"]
              and r["domain"] in SGD_DOMAIN_ANSWERS]
    all_areas = sorted(SGD_DOMAIN_ANSWERS[d][0] for d in SGD_DOMAIN_ANSWERS if d not in HELD_OUT_DOMAINS)
    rows = []
    for i in _sample(len(usable), k, rng):
        r = usable[int(i)]
        rows += _request_pair(r["text"].strip(), SGD_DOMAIN_ANSWERS[r["domain"]],
                              sgd_intent_answers(r, options.max_answer_words), all_areas, "sgd", rng,
                              (r["domain"], r["intent"]))
    return rows


def _snips_rows(data: Path, options: DataOptions, rng: np.random.Generator) -> list[dict]:
    table = [r for r in pq.read_table(data / "snips/snips_2017_intents.parquet").to_pylist()
             if r["split"] == "train" and r["intent"] in SNIPS_INTENTS and r["text"]]
    all_areas = sorted({areas[0] for areas, _ in SNIPS_INTENTS.values()})
    rows = []
    for i in _sample(len(table), options.per_request_source // 3, rng):  # 7 intents: fewer rows say enough
        r = table[int(i)]
        areas, intents = SNIPS_INTENTS[r["intent"]]
        rows += _request_pair(r["text"].strip(), areas, intents, all_areas, "snips", rng, (areas[0], r["intent"]))
    return rows


def _nlupp_rows(data: Path, options: DataOptions, rng: np.random.Generator) -> list[dict]:
    table = pq.read_table(data / "nlupp/nlupp.parquet").to_pylist()
    usable = []
    for r in table:
        wanted = [label_words(i).replace(" open apply setup get activate", " or open") for i in r["intents"]
                  if i not in NLUPP_ACTS]
        if r["text"] and r["domain"] in NLUPP_DOMAINS and wanted:
            usable.append((r["text"].strip(), r["domain"], ", ".join(wanted[:2])))
    rows = []
    all_areas = [a[0] for a in NLUPP_DOMAINS.values()] + ["travel", "shopping"]  # hints need four choices
    for i in _sample(len(usable), options.per_request_source // 3, rng):
        text, domain, intent = usable[int(i)]
        if len(intent.split()) <= options.max_answer_words:
            rows += _request_pair(text, NLUPP_DOMAINS[domain], (intent,), all_areas, "nlupp", rng, (domain, intent))
    return rows


def request_rows(data_dir: str | Path, options: DataOptions, rng: np.random.Generator) -> list[dict]:
    """Training rows from SGD (train dialogues, held-out domains left out), SNIPS train and NLU++."""
    data = Path(data_dir)
    return (_sgd_rows(data, options, rng, "train", options.per_request_source) + _snips_rows(data, options, rng)
            + _nlupp_rows(data, options, rng))


def _trainable_facet(data: Path, name: str) -> list[dict]:
    if name not in TRAINABLE_FACET_SETS:
        raise ValueError(f"facets/{name} is evaluation-only by its licence (facets/README.md)")
    return [r for r in pq.read_table(data / f"facets/{name}.parquet").to_pylist() if r["text"]]


def _source_texts(data: Path, file: str, column: str, k: int, max_chars: int, rng: np.random.Generator) -> list[str]:
    texts = sorted({t.strip() for t in pq.read_table(data / file, columns=[column]).column(column).to_pylist()
                    if isinstance(t, str) and t.strip()})
    return [texts[int(i)][:max_chars] for i in _sample(len(texts), k, rng)]


def breadth_rows(data_dir: str | Path, options: DataOptions, rng: np.random.Generator) -> list[dict]:
    """Questions about form and attitude: politeness / platform / community of the same requests (three
    answers per text), hate / offensive / neither of tweets, and the kind of text across seven sources."""
    data, k = Path(data_dir), options.per_breadth_question
    requests = _trainable_facet(data, "politeness_requests")
    texts = [r["text"] for r in requests]
    rows = _labelled_rows(texts, [POLITENESS_ANSWERS[r["politeness"]] for r in requests], POLITENESS_QUESTIONS,
                          "politeness", k, rng)
    rows += _labelled_rows(texts, [r["platform"] for r in requests], PLATFORM_QUESTIONS, "politeness-platform", k,
                           rng)
    rows += _labelled_rows(texts, [r["community"].removeprefix("Stack Exchange: ") for r in requests],
                           COMMUNITY_QUESTIONS, "politeness-community", k, rng)
    tweets = _trainable_facet(data, "hate_offensive_tweets")
    rows += _labelled_rows([r["text"] for r in tweets], [HATE_ANSWERS[r["hate_offensive"]] for r in tweets],
                           HATE_QUESTIONS, "hate-offensive", k, rng)
    kinds, kind_texts = [], []
    for kind, (file, column) in TEXT_KINDS.items():
        picked = _source_texts(data, file, column, max(k // 4, 1) * 2, 600, rng)
        kind_texts += picked
        kinds += [kind] * len(picked)
    rows += _labelled_rows(kind_texts, kinds, TEXT_KIND_QUESTIONS, "text-kind", len(kinds) // 2, rng)
    return rows


def held_out_facet_texts(data: Path) -> set[str]:
    """Texts of the facet sets training must not see (read only to leave them out)."""
    texts: set[str] = set()
    for path in sorted((data / "facets").glob("*.parquet")):
        if path.stem not in TRAINABLE_FACET_SETS:
            texts |= {t.strip() for t in pq.read_table(path, columns=["text"]).column("text").to_pylist()
                      if isinstance(t, str)}
    return texts


def question_kind_rows(data_dir: str | Path, options: DataOptions, rng: np.random.Generator) -> list[dict]:
    """The QA sets' questions asked what kind of answer they expect: as many rows of each kind, so the
    many "what" questions of SQuAD do not make every question look alike."""
    data = Path(data_dir)
    held_out = held_out_facet_texts(data)  # a few QA questions are also TREC questions, word for word
    by_kind: dict[str, list[str]] = {}
    for file in QA_FILES.values():
        for r in pq.read_table(data / file, columns=["question", "answer"]).to_pylist():
            if not (isinstance(r["question"], str) and isinstance(r["answer"], str)):
                continue
            kind = answer_kind(r["question"], r["answer"])
            if kind is not None and r["question"].strip() not in held_out:
                by_kind.setdefault(kind, []).append(r["question"].strip())
    texts, kinds = [], []
    for kind in sorted(by_kind):
        questions = sorted(set(by_kind[kind]))
        picked = [questions[int(i)] for i in _sample(len(questions), options.per_question_kind, rng)]
        texts += picked
        kinds += [kind] * len(picked)
    return _hinted_rows(texts, kinds, ANSWER_KIND_QUESTIONS, "question-kind", len(texts), rng)


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
        out.append({"input": context, "instruction": r["question"], "answer": r["answer"].strip(), "source": name,
                    "group": None})
    return out


def _labelled_rows(texts: list[str], answers: list[str], questions: Iterable[str], name: str, k: int,
                   rng: np.random.Generator) -> list[dict]:
    questions = list(questions)
    return [{"input": texts[int(i)], "instruction": questions[int(rng.integers(len(questions)))],
             "answer": answers[int(i)], "source": name, "group": f"{name}:{answers[int(i)]}"}
            for i in _sample(len(texts), k, rng)]


def build_training_rows(data_dir: str | Path, options: DataOptions | None = None,
                        embed: Embed | None = None) -> tuple[pa.Table, pa.Table]:
    """(train, validation) tables with input, instruction, answer, source, group; seeded, shuffled.

    `group` names the label a labelled row's answer stands for (null for QA rows): rows of one group
    answer alike, which the optional contrastive term of training uses.

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
            from inbedder.engine.minilm import MiniLM

            embed = MiniLM().encode
        rows += _subject_rows(data, options, embed, rng)
    if options.request_facets:
        rows += request_rows(data, options, rng)
    if options.breadth_facets:
        rows += breadth_rows(data, options, rng)
    if options.question_kinds:
        rows += question_kind_rows(data, options, rng)
    order = rng.permutation(len(rows))
    train = pa.Table.from_pylist([rows[int(i)] for i in order])
    validation_rows = _qa_rows(data / VALIDATION_FILE, "squad-dev",
                               DataOptions(**{**options.__dict__, "per_qa_source": options.validation_rows}), rng)
    if options.request_facets:  # SGD's dev dialogues: does the model answer both granularities on unseen requests?
        validation_rows += _sgd_rows(data, options, rng, "dev", options.request_validation_rows // 2)
    return train, pa.Table.from_pylist(validation_rows)


def used_files() -> list[str]:
    """Every data file a training set is built from (checked against EVALUATION_ONLY by the tests)."""
    return [*QA_FILES.values(), VALIDATION_FILE, "banking77/train.parquet", "clustering/go_emotion.large.parquet",
            "sgd/sgd_intent_turns.parquet", "snips/snips_2017_intents.parquet", "nlupp/nlupp.parquet"]


def used_facet_files() -> list[str]:
    """The facet sets training reads: only those whose licence allows a shipped adapter."""
    return [f"facets/{name}.parquet" for name in TRAINABLE_FACET_SETS]
