"""Explicit, stable seeding: every random stream is derived from (world seed, purpose, ...).

Never the global RNG and never ``hash()`` of a string (salted per process): a stream's seed is the
SHA-256 of its parts, so adding a new stream never shifts the numbers of an existing one.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` (their ``str`` forms joined by NUL bytes)."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def py_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``parts``."""
    return random.Random(derive_seed(*parts))


def deal(rng: random.Random, values, n: int) -> list:
    """``n`` values dealt from repeatedly shuffled decks: every value used about equally often."""
    out: list = []
    while len(out) < n:
        deck = list(values)
        rng.shuffle(deck)
        out += deck
    return out[:n]


def np_rng(*parts: object) -> np.random.Generator:
    """A numpy ``Generator`` seeded from ``parts``."""
    return np.random.default_rng(derive_seed(*parts))
