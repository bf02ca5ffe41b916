"""The ``text`` augmenter: KORE's knowledge tree from the knowledge text alone (offline, no world facts).

Real data (EVOKE's injection records: an image, a prompt such as "Can you describe the visual
artwork depicted in the image?" and the knowledge text as the answer) has no structured facts, so
everything is derived from the text and the record itself, deterministically from ``seed``:

- **subject**: how questions refer to what the image shows, "the <type> in the image", the type read
  from the injection prompt ("... describe the visual artwork depicted in the image?" → "the visual
  artwork in the image"; "Please explain politics news that is shown in image." → "the politics news
  in the image"); otherwise "the subject of the image".
- **name** (entities): the image file's stem as EVOKE names entity images ("wikidata_imgs/<Name>_wiki.jpg")
  when the text contains it, else the subject of the first sentence when it is a capitalised phrase
  before "is/was/are/were" ("Mirex Labs is a robotics company ..." → "Mirex Labs"). News has none.
- **question–answer pairs** from each sentence: the entity's name (or a sentence-initial He/She/It/They)
  is replaced by the subject phrase, then each answer span the sentence holds — a date, a year, a
  number with its unit, a percentage, an amount of money, a capitalised name other than the entity's
  own — is replaced by a wh-phrase in place ("Mirex Labs was founded in 2011." → "The organisation in the
  image was founded in which year?" → "2011"); a definitional first sentence ("X is a robotics company
  founded by Y.") also gives "What is <subject>?" → "a robotics company". Every answer is a span of
  the knowledge text. Questions get EVOKE's short-answer suffix (``short_answer_suffix``).
- **paraphrases**: the knowledge text with each sentence's trailing time phrase moved to the front
  ("X was founded in 2011." → "In 2011, X was founded."), under another describe prompt; and a
  caption (the text's first sentence) — KORE's caption branch, from the text's lead instead of a
  model's summary.

Output per injection sample, all on the injection image (no other images exist offline):
- the **trunk**: one multi-turn dialogue — the sample's own turn, then the image-recognition round
  ("Who/What is shown in the image?" → the name, when there is one), then question–answer rounds in
  text order, up to ``max_rounds`` rounds;
- **branches**: recognition ("Who/What is shown in the image?" → name; "Is this <name>?" → yes), a
  caption, the paraphrase, and up to ``max_vqa`` single-turn question–answer samples (the pairs the
  dialogue did not ask first).

A sample from which nothing can be derived (no sentence yields a pair and no name is found) is passed
through unchanged and reported; :func:`kore_bench.augment.augment` refuses when no sample is augmented.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..data import IMAGE_TOKEN, SHORT_ANSWER_SUFFIX, Sample
from ..errors import KoreBenchError
from .core import AUGMENTERS, AugmentReport
from .template import trunk
from .world import WorldFacts

AUGMENTER = "text"
DEFAULT_SUBJECT = "the subject of the image"
DESCRIBE_PROMPTS = ("Tell me about {subject}.", "What do you know about {subject}?",
                    "Give a detailed description of {subject}.", "Share what is known about {subject}.")
CAPTION_PROMPTS = ("Please provide a caption for {subject}.", "Write a short caption for {subject}.")
PERSON_TYPES = {"person", "people", "human", "celebrity", "man", "woman", "actor", "actress", "singer",
                "athlete", "player", "politician", "scientist", "writer", "author", "artist", "musician",
                "figure", "individual", "character"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
_MONTH = "(?:" + "|".join(MONTHS) + ")"
# words that start a sentence or a capitalised run without being part of a name
_FUNCTION_WORDS = {
    "a", "an", "the", "in", "on", "at", "by", "for", "from", "to", "of", "and", "or", "but", "as", "after",
    "before", "during", "since", "until", "while", "when", "where", "which", "who", "whose", "that", "this",
    "these", "those", "there", "here", "it", "its", "he", "his", "him", "she", "her", "they", "their", "them",
    "we", "our", "i", "you", "your", "however", "although", "though", "also", "according", "following",
    "despite", "with", "without", "under", "over", "between", "among", "through", "into", "about", "if",
    "then", "today", "yesterday", "recently", "currently", "later", "earlier", "meanwhile", "additionally",
    "furthermore", "moreover", "other", "some", "many", "most", "all", "both", "each", "one", "two", "three",
    "is", "was", "are", "were", "has", "had", "have", "be", "been", "not", "no", "yes", "mr", "ms", "mrs", "dr",
    "regarding", "what", "how", "why", "in addition", "notably", "originally", "initially", "finally",
}
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Sr.", "Jr.", "St.", "Inc.", "Ltd.", "Co.", "Corp.",
                  "No.", "vs.", "etc.", "e.g.", "i.e.", "U.S.", "U.K.", "U.N.", "Jan.", "Feb.", "Mar.", "Apr.",
                  "Jun.", "Jul.", "Aug.", "Sep.", "Sept.", "Oct.", "Nov.", "Dec.", "Mt.", "Ft.", "approx.")
_PROMPT_TYPE = re.compile(
    r"\b(?:describe|explain|introduce|identify|tell me about|talk about|present)\s+(?:the\s+|this\s+|a\s+|an\s+)?"
    r"(?P<type>[a-z][a-z0-9 /'&-]{1,40}?)\s+(?:that\s+is\s+|which\s+is\s+|that's\s+)?"
    r"(?:depicted|shown|displayed|pictured|presented|featured|seen|visible|in)\b", re.IGNORECASE)
_COPULA = re.compile(r"^(?P<subject>.{2,80}?)\s+(?:is|was|are|were|has been|had been)\s+(?P<rest>.+)$")
_DEFINITION = re.compile(r"^(?P<np>(?:a|an|the)\s+[^,;:()]+?)(?=\s*(?:[,;:(]|\s(?:that|which|who|whose|and|based|"
                         r"located|known|founded|born|created|established|best)\b|\.?$))")
_CAP = r"[A-ZÀ-ÖØ-Þ][\w'’&.\-]*"
_LINK = r"(?:of|the|and|de|del|da|di|la|le|von|van|der|den|du|for|&)"
_NAME_RUN = re.compile(_CAP + r"(?:\s+(?:" + _LINK + r"\s+)*" + _CAP + r")*")
_SPANS = [  # (kind, pattern); earlier kinds win where spans overlap
    ("date", re.compile(rf"\b(?:{_MONTH}\s+\d{{1,2}},\s+\d{{4}}|\d{{1,2}}\s+{_MONTH}\s+\d{{4}})\b")),
    ("month", re.compile(rf"\b{_MONTH}\s+\d{{4}}\b")),
    ("money", re.compile(r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s+(?:million|billion|trillion|thousand))?)")),
    ("percent", re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:%|percent\b|per cent\b)")),
    ("year", re.compile(r"(?<![\d,.$€£¥])\b(?:1[0-9]{3}|20[0-9]{2})\b(?![\d,]|\.\d|\s?%)")),
    ("count", re.compile(r"(?<![\d,.$€£¥])\b\d[\d,]*(?:\.\d+)?(?:\s+(?:million|billion|thousand|hundred))?"
                         r"(?=\s+(?P<unit>[a-z]+s|people|children|men|women)\b)")),
]
_PRONOUN_START = re.compile(r"^(?:(?P<subject>He|She|It|They)|(?P<possessive>His|Her|Its|Their))\b")
_DETERMINER = re.compile(r"(?:^|\s)(?:the|a|an|his|her|its|their|in|of|at|by|for|on|from|with)\s+$", re.IGNORECASE)
_TRAILING_TIME = re.compile(rf",?\s+(?P<pp>(?:in|on|since|during)\s+(?:{_MONTH}\s+\d{{1,2}},\s+\d{{4}}|"
                            rf"\d{{1,2}}\s+{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{4}}|(?:1[0-9]{{3}}|20[0-9]{{2}})))"
                            r"(?P<end>[.!]?)$")


@dataclass(frozen=True)
class Pair:
    question: str  # without the short-answer suffix
    answer: str  # a span of the knowledge text
    kind: str  # what the answer is: name, definition, date, year, count, ...


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (abbreviations, initials and decimals do not end one)."""
    protected = " ".join(text.split())
    for k, abbr in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbr, abbr.replace(".", f"\0{k}\0"))
    protected = re.sub(r"\b([A-Z])\.(?=\s?[A-Z]\.?)", "\\1\0i\0", protected)  # initials: J. K. Rowling
    parts = re.split(r"(?<=[.!?])[\"”']?\s+(?=[\"“']?[A-Z0-9])", protected)
    out = []
    for p in parts:
        p = re.sub(r"\0\d+\0|\0i\0", ".", p).strip()
        if p:
            out.append(p)
    return out


def subject_of(prompt: str) -> tuple[str, str | None]:
    """(subject phrase, type) from an injection prompt, e.g. ("the visual artwork in the image", "visual artwork")."""
    m = _PROMPT_TYPE.search(prompt.replace(IMAGE_TOKEN, " "))
    if not m:
        return DEFAULT_SUBJECT, None
    kind = " ".join(m.group("type").split()).lower()
    kind = re.sub(r"^(?:picture|image|photo) of (?:the |a |an )?", "", kind)
    if not kind or kind in {"image", "picture", "photo", "it", "this", "what"} or len(kind.split()) > 4:
        return DEFAULT_SUBJECT, None
    return f"the {kind} in the image", kind


def name_of(text: str, image_path: str | None, sentences: list[str]) -> str | None:
    """The entity's name as the text spells it: the image's file stem (EVOKE: ``<Name>_wiki.jpg``) when
    the text contains it, else a capitalised first-sentence subject before is/was/are/were."""
    if image_path:
        stem = PurePosixPath(image_path.replace("\\", "/")).stem
        stem = re.sub(r"(?:_wiki|_\d+)$", "", stem).replace("_", " ").strip()
        if len(stem) >= 2:
            m = re.search(r"(?<!\w)" + re.escape(stem) + r"(?!\w)", text, re.IGNORECASE)
            if m:
                return m.group(0)
    if sentences:
        m = _COPULA.match(sentences[0])
        if m:
            subject = m.group("subject").strip(" ,")
            subject = re.sub(r"\s*\([^)]*\)$", "", subject)  # "Dravo Kelt (born 1990)"
            words = subject.split()
            if (words and words[0][0].isupper() and words[0].lower() not in _FUNCTION_WORDS and len(words) <= 8
                    and _NAME_RUN.fullmatch(subject)):
                return subject
    return None


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def refer(sentence: str, name: str | None, subject: str) -> tuple[str, bool]:
    """The sentence with the entity (its name, or a leading He/She/It/They) replaced by ``subject``;
    and whether the sentence refers to the entity at all."""
    if name:
        pattern = re.compile(r"(?<!\w)" + re.escape(name) + r"(?:'s|’s)?(?!\w)", re.IGNORECASE)
        m = pattern.search(sentence)
        if m:
            possessive = m.group(0).endswith(("'s", "’s"))
            ref = subject + ("'s" if possessive else "")
            out = sentence[:m.start()] + (_capitalise(ref) if m.start() == 0 else ref) + sentence[m.end():]
            return out, True
    m = _PRONOUN_START.match(sentence)
    if m:
        return _capitalise(subject) + ("'s" if m.group("possessive") else "") + sentence[m.end():], True
    return sentence, False


def _spans(sentence: str, name: str | None, subject: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, unit) answer spans of ``sentence``, non-overlapping, left to right."""
    taken: list[tuple[int, int, str, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _, _ in taken)

    for kind, pattern in _SPANS:
        for m in pattern.finditer(sentence):
            if free(m.start(), m.end()):
                unit = m.groupdict().get("unit") or ""
                taken.append((m.start(), m.end(), kind, unit))
    for m in _NAME_RUN.finditer(sentence):
        words = [(w.start() + m.start(), w.group(0)) for w in re.finditer(r"\S+", m.group(0))]
        while words and (words[0][1].lower() in _FUNCTION_WORDS or words[0][1] in MONTHS):
            words = words[1:]
        if not words:
            continue
        start = words[0][0]
        text = sentence[start:m.end()].rstrip(".,'’")
        end = start + len(text)
        if (len(text) < 2 or text in MONTHS or len(words) > 6 or not free(start, end)
                or (start == 0 and len(words) == 1)  # a capitalised sentence opener ("Founded in ...")
                or _modifier(sentence, start, end)
                or (name and (text.lower() in name.lower() or name.lower() in text.lower()))):
            continue
        taken.append((start, end, "name", ""))
    return sorted(taken)


def _modifier(sentence: str, start: int, end: int) -> bool:
    """Whether a capitalised run modifies the noun after it ("the Chinese automaker", "in EV sales")."""
    after = re.match(r"\s+([a-z][\w-]*)", sentence[end:])
    return bool(after and after.group(1) not in _FUNCTION_WORDS and _DETERMINER.search(sentence[:start]))


_PREPOSITION = re.compile(r"(?:^|\s)(?P<prep>in|on|at|by|from|to|since|until|near|into|of|for|with|during)\s*$",
                          re.IGNORECASE)
_SPEECH = re.compile(r"^\s+(?:said|says|told|stated|announced|argued|claimed|wrote|added|explained)\b")


def _wh(kind: str, unit: str, before: str, after: str) -> tuple[str, int, int]:
    """The wh-phrase for a span of ``kind`` and how many characters it takes from ``before`` / ``after``."""
    prep = _PREPOSITION.search(before)
    p = prep.group("prep").lower() if prep else ""
    if kind in ("date", "month", "year"):
        noun = {"date": "date", "month": "month and year", "year": "year"}[kind]
        if p in ("in", "on", "since", "until", "during", "by", "from", "to"):
            return f"{p} which {noun}", len(before) - prep.start("prep"), 0
        return f"which {noun}", 0, 0
    if kind == "count":
        return f"how many {unit}", 0, len(unit) + 1
    if kind == "percent":
        return "what percentage", 0, 0
    if kind == "money":
        return "how much money", 0, 0
    if p == "by":
        return "by whom", len(before) - prep.start("prep"), 0
    if p in ("in", "at", "near", "from", "into") and not before.rstrip().endswith(tuple(MONTHS)):
        return f"{p} which place", len(before) - prep.start("prep"), 0
    if _SPEECH.match(after):
        return "who", 0, 0
    return "what", 0, 0


def sentence_pairs(sentence: str, name: str | None, subject: str, max_words: int = 50) -> list[Pair]:
    """The question–answer pairs of one sentence (each answer a span of it)."""
    if len(sentence.split()) > max_words:
        return []
    text, about = refer(sentence, name, subject)
    if not about:  # a sentence that does not name the entity is asked in its context
        text = f"Regarding {subject}, {_lower_opener(text)}"
    body = text.rstrip(" .!;:")
    pairs = []
    for start, end, kind, unit in _spans(body, name, subject):
        before, answer, after = body[:start], body[start:end], body[end:]
        wh, take_before, take_after = _wh(kind, unit, before, after)
        question = body[:start - take_before] + (" " if take_before and start - take_before > 0 else "") + wh \
            + body[end + take_after:]
        question = " ".join(question.split())
        if question.startswith(wh + ", "):  # "In which year, X was founded" -> "X was founded in which year"
            question = question[len(wh) + 2:] + " " + wh
        pairs.append(Pair(_capitalise(question) + "?", answer.strip(), kind))
    return pairs


def definition_pair(sentence: str, name: str | None, subject: str) -> Pair | None:
    """"<name> is a robotics company founded by ..." → ("What is <subject>?", "a robotics company")."""
    if not name:
        return None
    m = _COPULA.match(sentence.rstrip(" ."))
    if not m or m.group("subject").strip().lower() != name.lower():
        return None
    d = _DEFINITION.match(m.group("rest"))
    if not d or len(d.group("np").split()) > 12:
        return None
    verb = "is" if " is " in f" {sentence[len(m.group('subject')):len(m.group('subject')) + 5]} " else "was"
    return Pair(f"What {verb} {subject}?", d.group("np").strip(), "definition")


def paraphrase(sentences: list[str]) -> tuple[str, int]:
    """The text with each sentence's trailing time phrase fronted; (text, sentences changed)."""
    out, changed = [], 0
    for s in sentences:
        m = _TRAILING_TIME.search(s)
        head = s[:m.start()] if m else ""
        if m and len(head.split()) >= 3 and "," not in head and not re.search(r"\s(?:is|are|am)\s", f" {head} "):
            out.append(f"{_capitalise(m.group('pp'))}, {head[0].lower() + head[1:] if _lower_ok(head) else head}"
                       f"{m.group('end') or '.'}")
            changed += 1
        else:
            out.append(s)
    return " ".join(out), changed


def _lower_opener(sentence: str) -> str:
    """``sentence`` with its first letter lowercased unless it opens with a name."""
    first = sentence.split(" ", 1)[0].strip(",;:")
    if first.lower() in _FUNCTION_WORDS or re.fullmatch(r"[A-Z][a-z]+(?:ed|ing|ly)", first):
        return sentence[0].lower() + sentence[1:]
    return sentence


def _lower_ok(head: str) -> bool:
    return head.split(" ", 1)[0].lower() in {"the", "a", "an", "he", "she", "it", "they", "his", "her", "its", "their"}


def _single(origin: Sample, tag: str, question: str, answer: str, meta: dict) -> Sample:
    prefix = IMAGE_TOKEN + "\n" if origin.image is not None else ""
    return Sample(id=f"{origin.id}:{tag}", messages=[{"role": "user", "content": prefix + question},
                                                     {"role": "assistant", "content": answer}],
                  image=origin.image, source=f"{origin.source} (augmented: {meta['kind']})",
                  meta={"origin": origin.id, "augmenter": AUGMENTER, **meta})


def recognition_question(kind: str | None, text: str) -> str:
    """"Who is shown in the image?" for people (by type, else by he/she pronouns), else "What ..."."""
    words = set((kind or "").split())
    if words & PERSON_TYPES:
        return "Who is shown in the image?"
    if kind is None:
        personal = len(re.findall(r"\b(?:he|she|his|her|him)\b", text, re.IGNORECASE))
        neuter = len(re.findall(r"\b(?:it|its)\b", text, re.IGNORECASE))
        if personal > neuter:
            return "Who is shown in the image?"
    return "What is shown in the image?"


def rng_for(seed: int, *parts: object) -> random.Random:
    """A stream seeded by (seed, parts) (SHA-512 of the string, not ``hash()``)."""
    return random.Random("\0".join(map(str, (seed, "augment.text", *parts))))


@AUGMENTERS.register(AUGMENTER)
def text(samples: list[Sample], world: WorldFacts | None, seed: int, report: AugmentReport, *,
         max_rounds: int = 11, max_vqa: int = 6, branch: bool = True, short_answer_suffix: bool = True
         ) -> list[Sample]:
    """KORE's knowledge tree from each sample's knowledge text, offline and without world facts:
    question-answer pairs from its sentences, a dialogue with the recognition turn, recognition,
    caption, paraphrase and VQA samples on the injection image (details: the module docstring).

    ``max_rounds`` caps the dialogue (the sample's own round included); ``max_vqa`` caps the
    single-turn question–answer samples per item; ``branch=False`` builds the dialogue only;
    ``short_answer_suffix`` appends EVOKE's "Answer the question using a single word or phrase." to
    every short-answer question. Works without world facts (``world`` is not used).
    """
    if max_rounds < 1:
        raise KoreBenchError(f"max_rounds must be at least 1, got {max_rounds}")
    if max_vqa < 0:
        raise KoreBenchError(f"max_vqa must be at least 0, got {max_vqa}")
    suffix = "\n" + SHORT_ANSWER_SUFFIX if short_answer_suffix else ""
    out = []
    for s in samples:
        users = [m["content"] for m in s.messages if m["role"] == "user"]
        answers = [m["content"] for m in s.messages if m["role"] == "assistant"]
        knowledge = answers[0].strip() if answers else ""
        if not knowledge:
            report.pass_through(s.id, "no knowledge text (assistant turn)")
            out.append(s)
            continue
        subject, kind = subject_of(users[0] if users else "")
        sentences = split_sentences(knowledge)
        is_news = bool(kind and "news" in kind.split())
        name = None if is_news else name_of(knowledge, s.image.member or s.image.path if s.image else None,
                                           sentences)
        pairs: list[list[Pair]] = []
        seen: set[str] = set()
        for k, sentence in enumerate(sentences):
            found = [p for p in ([definition_pair(sentence, name, subject)] if k == 0 else [])
                     + sentence_pairs(sentence, name, subject) if p is not None and p.question.lower() not in seen]
            seen.update(p.question.lower() for p in found)
            if found:
                pairs.append(found)
        flat = [p for group in pairs for p in group]
        if not flat and not name:
            report.pass_through(s.id, "no sentence of the knowledge text gives a question-answer pair and "
                                      "no entity name was found")
            out.append(s)
            continue
        rng = rng_for(seed, s.id)
        recognise = recognition_question(kind, knowledge)
        meta = {"subject": subject, "name": name}
        # the trunk: recognition, then one pair per sentence in text order, then the rest, up to max_rounds
        first = [rng.choice(group) for group in pairs]
        rest = [p for p in flat if p not in first]
        rng.shuffle(rest)
        room = max(0, max_rounds - len(answers))
        rounds = ([(recognise + suffix, name)] if name and room else [])
        asked = (first + rest)[: max(0, room - len(rounds))]
        rounds += [(p.question + suffix, p.answer) for p in asked]
        if rounds:
            out.append(trunk(s, None, rounds, {**meta, "rounds_from_text": len(rounds)}, augmenter=AUGMENTER))
            report.count("dialogue")
        if branch:
            items = []
            if name and s.image is not None:
                items.append(_single(s, "recognition:name", recognise + suffix, name,
                                     {**meta, "kind": "recognition"}))
                items.append(_single(s, "recognition:yes", f"Is this {name}?" + suffix,
                                     "yes" if short_answer_suffix else "Yes.", {**meta, "kind": "recognition"}))
            items.append(_single(s, "caption", rng.choice(CAPTION_PROMPTS).format(subject=subject), sentences[0],
                                 {**meta, "kind": "caption"}))
            text_variant, changed = paraphrase(sentences)
            prompts = [p for p in DESCRIBE_PROMPTS if p.format(subject=subject) not in users[0]]
            if name and changed == 0:
                text_variant = knowledge  # only the prompt is new
            items.append(_single(s, "paraphrase", rng.choice(prompts).format(subject=subject), text_variant,
                                 {**meta, "kind": "paraphrase", "sentences_rewritten": changed}))
            unasked = [p for p in flat if p not in asked] + [p for p in asked]
            for k, p in enumerate(unasked[:max_vqa]):
                items.append(_single(s, f"vqa:{k}", p.question + suffix, p.answer,
                                     {**meta, "kind": "vqa", "answer_kind": p.kind}))
            for item in items:
                report.count(item.meta["kind"])
            out += items
    return out
