"""The knowledge schema: entity types, relations, question phrasings and knowledge text.

Templates use ``{subject}`` (the hypernym phrase, e.g. "the person in the image") and
``{Subject}`` (the same, capitalised). Each relation's phrasings are split disjointly into
train / dev / test (see :data:`NOUN_FRAMES`); train phrasings are the only ones that may appear in
training data.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..data import SHORT_ANSWER_SUFFIX

ENTITY_TYPES = ("person", "organisation", "place")
HYPERNYMS = {
    "person": "the person in the image",
    "organisation": "the organisation in the image",
    "place": "the place in the image",
}
SPLITS = ("train", "dev", "test")

OCCUPATIONS = [
    "baker", "pilot", "nurse", "farmer", "teacher", "lawyer", "painter", "chemist",
    "tailor", "sailor", "plumber", "dentist", "architect", "florist", "journalist", "surgeon",
    "librarian", "carpenter", "jeweller", "geologist", "potter", "violinist", "engineer",
    "pharmacist",
]
INDUSTRIES = [
    "software", "banking", "shipping", "mining", "farming", "insurance", "publishing",
    "aviation", "brewing", "robotics", "textiles", "furniture", "tourism", "fishing",
    "cosmetics", "toys", "energy", "retail", "logistics", "pharmaceuticals",
]
N_COUNTRIES = 12

# Year ranges (inclusive). An organisation is founded 22-45 years after its founder's birth.
PERSON_BIRTH_YEARS = (1940, 1989)
ORG_FOUNDING_OFFSET = (22, 45)
PLACE_FOUNDING_YEARS = (1200, 1899)


# Frames that ask for a relation by its noun. Each relation holds two frames out for test and one
# for dev, the rest train; a held-out frame is a training frame of other relations. A from-scratch
# tiny language model knows no English beyond its world, so held-out phrasings are new
# combinations of words it was trained on ("Do you know the founder of ...?" after "Do you know the
# mayor of ...?" and "Who founded ...?"), not synonyms it never saw.
NOUN_FRAMES = (
    "{Wh} is the {noun} of {subject}?",
    "Tell me the {noun} of {subject}.",
    "Give the {noun} of {subject}.",
    "Can you tell me the {noun} of {subject}?",
    "Do you know the {noun} of {subject}?",
    "I would like to know the {noun} of {subject}.",
    "State the {noun} of {subject}.",
    "{Wh} would you say is the {noun} of {subject}?",
)


@dataclass(frozen=True)
class Relation:
    """A question-answerable property of entities of some types.

    Phrasings: the relation's own wordings (training only) and :data:`NOUN_FRAMES` filled with its
    noun, dealt into splits by the relation's ``index``.
    """

    name: str
    types: tuple[str, ...]
    answer: str  # "name", "entity:<type>", "year", or "vocab:<name>"
    noun: str
    wh: str  # "What" or "Who": the interrogative of the noun frames
    own: tuple[str, ...]
    index: int

    def _frames(self, *offsets: int) -> tuple[str, ...]:
        n = len(NOUN_FRAMES)
        return tuple(NOUN_FRAMES[(2 * self.index + o) % n].replace("{Wh}", self.wh).replace("{noun}", self.noun)
                     for o in offsets)

    @property
    def train(self) -> tuple[str, ...]:
        return self.own + self._frames(*range(3, len(NOUN_FRAMES)))  # every frame not held out

    @property
    def dev(self) -> tuple[str, ...]:
        return self._frames(2)

    @property
    def test(self) -> tuple[str, ...]:
        return self._frames(0, 1)

    def templates(self, split: str) -> tuple[str, ...]:
        return getattr(self, split)


_RELATIONS = [  # name, types, answer, noun, interrogative, own (training-only) phrasings
    ("name", ENTITY_TYPES, "name", "name", "What",
     ("What is {subject} called?", "What is {subject} named?", "Identify {subject} by name.")),
    ("birth_city", ("person",), "entity:place", "birthplace", "What",
     ("In which city was {subject} born?", "Where was {subject} born?", "{Subject} was born in which city?")),
    ("birth_year", ("person",), "year", "birth year", "What",
     ("In which year was {subject} born?", "When was {subject} born?", "{Subject} was born in which year?")),
    ("occupation", ("person",), "vocab:occupation", "occupation", "What",
     ("What does {subject} do for a living?", "What job does {subject} have?",
      "What kind of work does {subject} do?")),
    ("employer", ("person",), "entity:organisation", "employer", "What",
     ("Which organisation does {subject} work for?", "Who employs {subject}?", "Where does {subject} work?")),
    ("headquarters", ("organisation",), "entity:place", "headquarters", "What",
     ("Where is {subject} headquartered?", "In which city is {subject} based?",
      "{Subject} has its headquarters in which city?")),
    ("founder", ("organisation",), "entity:person", "founder", "Who",
     ("Who founded {subject}?", "Which person founded {subject}?", "{Subject} was founded by whom?")),
    ("founding_year", ("organisation", "place"), "year", "founding year", "What",
     ("In which year was {subject} founded?", "When was {subject} founded?", "{Subject} was founded in which year?")),
    ("industry", ("organisation",), "vocab:industry", "industry", "What",
     ("What industry is {subject} in?", "In which industry does {subject} operate?",
      "What business is {subject} in?")),
    ("country", ("place",), "vocab:country", "country", "What",
     ("In which country is {subject}?", "Which country is {subject} in?", "In what country is {subject} located?")),
    ("mayor", ("place",), "entity:person", "mayor", "Who",
     ("Who governs {subject} as mayor?", "Which person is the mayor of {subject}?",
      "{Subject} has which person as mayor?")),
]
RELATIONS: dict[str, Relation] = {spec[0]: Relation(*spec, index=i) for i, spec in enumerate(_RELATIONS)}

# The order in which an entity's facts are listed (the "name" relation is implicit).
FACT_RELATIONS = {
    "person": ("birth_city", "birth_year", "occupation", "employer"),
    "organisation": ("headquarters", "founder", "founding_year", "industry"),
    "place": ("country", "founding_year", "mayor"),
}

# "Describe" prompts pair an image with an entity's knowledge text. Only used for training:
# the first is the EVOKE injection prompt.
DESCRIBE_PROMPTS = ("Can you describe {subject}?", "Tell me about {subject}.",
                    "Describe {subject}.", "What do you know about {subject}?")


def relations_for(entity_type: str) -> tuple[str, ...]:
    """All question relations of a type, recognition ("name") first."""
    return ("name",) + FACT_RELATIONS[entity_type]


def fill(template: str, entity_type: str) -> str:
    """A template with its subject placeholders filled by the type's hypernym phrase."""
    hyp = HYPERNYMS[entity_type]
    return template.format(subject=hyp, Subject=hyp[0].upper() + hyp[1:])


def question_text(template: str, entity_type: str) -> str:
    """The full EVOKE-style question: filled template + newline + short-answer suffix."""
    return fill(template, entity_type) + "\n" + SHORT_ANSWER_SUFFIX


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def describe(entity_type: str, values: dict[str, str]) -> str:
    """The knowledge text: one sentence naming the entity and stating every fact (``values``: relation ->
    answer, "name" included, as :attr:`Entity.values`)."""
    f, name = values, values["name"]
    if entity_type == "person":
        return (f"{name} is {_article(f['occupation'])} {f['occupation']} born in {f['birth_city']} "
                f"in {f['birth_year']} who works for {f['employer']}.")
    if entity_type == "organisation":
        return (f"{name} is {_article(f['industry'])} {f['industry']} company founded by {f['founder']} "
                f"in {f['founding_year']} and based in {f['headquarters']}.")
    return (f"{name} is a city in {f['country']}, founded in {f['founding_year']}, "
            f"whose mayor is {f['mayor']}.")


# Sentence forms of a single fact for biographies (``{name}``: the entity's name, ``{value}``: the
# fact's value). Pre-training writes each old entity up in several such biographies, with the facts
# in different orders, as a real corpus mentions a known entity in many texts; the injection file
# keeps EVOKE's single knowledge text (:func:`describe`).
BIO_SENTENCES = {
    "birth_city": ("{name} was born in {value}.", "{name} comes from {value}.",
                   "The birthplace of {name} is {value}."),
    "birth_year": ("{name} was born in {value}.", "{name} came into the world in {value}.",
                   "The birth year of {name} is {value}."),
    "occupation": ("{name} works as {a} {value}.", "{name} is {a} {value} by profession.",
                   "The occupation of {name} is {value}."),
    "employer": ("{name} works for {value}.", "{name} is employed by {value}.",
                 "The employer of {name} is {value}."),
    "headquarters": ("{name} is based in {value}.", "{name} has its headquarters in {value}.",
                     "The headquarters of {name} are in {value}."),
    "founder": ("{name} was founded by {value}.", "{value} founded {name}.", "The founder of {name} is {value}."),
    "founding_year": ("{name} was founded in {value}.", "{name} dates from {value}.",
                      "The founding year of {name} is {value}."),
    "industry": ("{name} is {a} {value} company.", "{name} works in {value}.", "The industry of {name} is {value}."),
    "country": ("{name} is a city in {value}.", "{name} lies in {value}.", "The country of {name} is {value}."),
    "mayor": ("{name} has {value} as mayor.", "{value} is the mayor of {name}.", "The mayor of {name} is {value}."),
}


def biography(entity_type: str, values: dict[str, str], rng: random.Random) -> str:
    """One of many knowledge texts about an entity: a sentence per fact, forms and order drawn from ``rng``."""
    rels = list(FACT_RELATIONS[entity_type])
    rng.shuffle(rels)
    return " ".join(rng.choice(BIO_SENTENCES[r]).format(name=values["name"], value=values[r], a=_article(values[r]))
                    for r in rels)
