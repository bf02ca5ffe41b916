"""Errors a user can act on, and the nearest-name suggestion every registry uses."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class KoreBenchError(Exception):
    """An error caused by input or configuration; the CLI prints it without a traceback."""


LISTED = 40  # an unknown-name error lists at most this many valid names (lm-eval knows thousands of tasks)


class UnknownNameError(KoreBenchError, KeyError):
    """A name (method, suite, preset, architecture ...) that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        hint = suggest(name, self.valid)
        msg = f"unknown {kind} {name!r}"
        if hint:
            msg += f"; did you mean {hint!r}?"
        shown = self.valid[:LISTED]
        more = f" and {len(self.valid) - LISTED} more" if len(self.valid) > LISTED else ""
        msg += f" (valid: {', '.join(shown)}{more})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataError(KoreBenchError):
    """A malformed data file or record; the message names the file and line/row."""


def suggest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return matches[0] if matches else None
