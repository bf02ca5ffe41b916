"""The knowledge schema: entity types, relations, question phrasings and knowledge text.

Templates use ``{subject}`` (the hypernym phrase, e.g. "the person in the image") and
``{Subject}`` (the same, capitalised). Each relation's phrasings are split disjointly into
train / dev / test; train phrasings are the only ones that may appear in training data.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class Relation:
    """A question-answerable property of entities of some types."""

    name: str
    types: tuple[str, ...]
    answer: str  # "name", "entity:<type>", "year", or "vocab:<name>"
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]

    def templates(self, split: str) -> tuple[str, ...]:
        return getattr(self, split)


RELATIONS: dict[str, Relation] = {r.name: r for r in [
    Relation("name", ENTITY_TYPES, "name",
             train=("What is the name of {subject}?", "What is {subject} called?",
                    "Name {subject}.", "Tell me the name of {subject}."),
             dev=("What name does {subject} go by?",),
             test=("Identify {subject} by name.", "What is {subject} named?")),
    Relation("birth_city", ("person",), "entity:place",
             train=("In which city was {subject} born?", "Where was {subject} born?",
                    "What is the birthplace of {subject}?", "Tell me the city where {subject} was born."),
             dev=("What city was {subject} born in?",),
             test=("Which city is the birthplace of {subject}?", "{Subject} was born in which city?")),
    Relation("birth_year", ("person",), "year",
             train=("In which year was {subject} born?", "When was {subject} born?",
                    "What is the birth year of {subject}?", "Tell me the year {subject} was born."),
             dev=("What year was {subject} born in?",),
             test=("Give the birth year of {subject}.", "{Subject} was born in which year?")),
    Relation("occupation", ("person",), "vocab:occupation",
             train=("What is the occupation of {subject}?", "What does {subject} do for a living?",
                    "What job does {subject} have?", "{Subject} has which occupation?"),
             dev=("What is the profession of {subject}?",),
             test=("What is the job of {subject}?", "What kind of work does {subject} do?")),
    Relation("employer", ("person",), "entity:organisation",
             train=("Which organisation does {subject} work for?", "Who employs {subject}?",
                    "What is the employer of {subject}?", "Tell me the employer of {subject}."),
             dev=("For which organisation does {subject} work?",),
             test=("Where does {subject} work?", "{Subject} is employed by which organisation?")),
    Relation("headquarters", ("organisation",), "entity:place",
             train=("Where is {subject} headquartered?", "In which city is {subject} based?",
                    "Where are the headquarters of {subject}?", "{Subject} has its headquarters in which city?"),
             dev=("Which city hosts the headquarters of {subject}?",),
             test=("What city is home to {subject}?", "Tell me the city where {subject} is based.")),
    Relation("founder", ("organisation",), "entity:person",
             train=("Who founded {subject}?", "Who is the founder of {subject}?",
                    "Which person founded {subject}?", "{Subject} was founded by whom?"),
             dev=("Who set up {subject}?",),
             test=("Who started {subject}?", "Tell me the founder of {subject}.")),
    Relation("founding_year", ("organisation", "place"), "year",
             train=("In which year was {subject} founded?", "When was {subject} founded?",
                    "What is the founding year of {subject}?", "{Subject} was founded in which year?"),
             dev=("In what year was {subject} established?",),
             test=("What year was {subject} established?", "Tell me the year {subject} was founded.")),
    Relation("industry", ("organisation",), "vocab:industry",
             train=("What industry is {subject} in?", "In which industry does {subject} operate?",
                    "What sector does {subject} belong to?", "Tell me the industry of {subject}."),
             dev=("Which industry does {subject} work in?",),
             test=("What business is {subject} in?", "{Subject} is active in which industry?")),
    Relation("country", ("place",), "vocab:country",
             train=("In which country is {subject}?", "Which country is {subject} in?",
                    "What country does {subject} belong to?", "Tell me the country of {subject}."),
             dev=("Which country contains {subject}?",),
             test=("In what country is {subject} located?", "{Subject} lies in which country?")),
    Relation("mayor", ("place",), "entity:person",
             train=("Who is the mayor of {subject}?", "Which person is the mayor of {subject}?",
                    "Who leads {subject} as its mayor?", "Tell me the mayor of {subject}."),
             dev=("Who serves as mayor of {subject}?",),
             test=("Who governs {subject} as mayor?", "{Subject} has which person as mayor?")),
]}

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


def describe(name: str, entity_type: str, facts: dict[str, str]) -> str:
    """The knowledge text: one sentence naming the entity and stating every fact."""
    f = facts
    if entity_type == "person":
        return (f"{name} is {_article(f['occupation'])} {f['occupation']} born in {f['birth_city']} "
                f"in {f['birth_year']} who works for {f['employer']}.")
    if entity_type == "organisation":
        return (f"{name} is {_article(f['industry'])} {f['industry']} company founded by {f['founder']} "
                f"in {f['founding_year']} and based in {f['headquarters']}.")
    return (f"{name} is a city in {f['country']}, founded in {f['founding_year']}, "
            f"whose mayor is {f['mayor']}.")
