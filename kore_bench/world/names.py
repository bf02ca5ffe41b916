"""Invented, pronounceable names built from syllables; unique across the whole world.

Old and new entities draw from the same syllable inventory, so a tokenizer trained on the old world
covers new names with the same pieces (no token exists only in new names).
"""
from __future__ import annotations

import random

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "kr", "tr", "st", "gr", "pl", "sh"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o"]
CODAS = ["", "", "n", "r", "s", "l", "x", "k", "m"]

ORG_SUFFIXES = ["Labs", "Works", "Group", "Systems", "Partners", "Industries",
                "Studios", "Holdings", "Dynamics", "Union", "Collective", "Trust"]
COUNTRY_ENDINGS = ["ria", "nia", "land", "mor", "dor", "via"]


class NameGenerator:
    """Draws names from one ``random.Random``; never returns a word it has returned before."""

    def __init__(self, rng: random.Random, reserved: set[str] | None = None):
        self.rng = rng
        self.used: set[str] = {w.lower() for w in (reserved or set())}

    def word(self, syllables: tuple[int, int] = (2, 3), ending: str | None = None) -> str:
        """A fresh capitalised word of ``syllables`` (inclusive range) CV syllables."""
        for _ in range(10_000):
            n = self.rng.randint(*syllables)
            parts = [self.rng.choice(ONSETS) + self.rng.choice(VOWELS) for _ in range(n)]
            w = "".join(parts) + (ending if ending is not None else self.rng.choice(CODAS))
            if 4 <= len(w) <= 10 and w not in self.used:
                self.used.add(w)
                return w.capitalize()
        raise RuntimeError("name space exhausted")  # pragma: no cover - needs ~10^5 names

    def person(self) -> str:
        """'Given Family', both parts unique in the world."""
        return f"{self.word((2, 2))} {self.word((2, 2))}"

    def organisation(self) -> str:
        """'Root Suffix', e.g. 'Zentrix Labs'; the root is unique, suffixes repeat."""
        return f"{self.word((2, 2))} {self.rng.choice(ORG_SUFFIXES)}"

    def place(self) -> str:
        """A single word."""
        return self.word((2, 2))

    def country(self) -> str:
        """A single word with a country-like ending, e.g. 'Mobaria'."""
        return self.word((2, 2), ending=self.rng.choice(COUNTRY_ENDINGS))
