"""VLMEvalKit's answer extraction on its exact-matching path (no judge), rule for rule.

Transcribed from VLMEvalKit (``vlmeval/smp/misc.py: process_punctuation``,
``vlmeval/dataset/utils/yorn.py: YOrN_Extraction``, ``vlmeval/utils/matching_util.py: can_infer*``),
quirks included, so predictions are read exactly as VLMEvalKit reads them:

* yes/no: the prediction is lowercased, punctuation-processed and split into words; "yes" without
  "no" is Yes, "no" without "yes" is No, anything else (both, neither: "I am not sure.") is Unknown.
* options: a choice letter standing alone among the answer's tokens (after replacing ``.()[],:;!*#{}``
  by spaces) counts if exactly one choice letter occurs and it occurs within the last five tokens'
  positions (so "A cat sits" is read as A, as VLMEvalKit does); failing that, the answer (if at most
  twice as long as all option texts together) picks the only option whose lowercased text it contains.
  A refusal phrase gives ``"Z"``; nothing found gives None (VLMEvalKit: ``False``; scored as ``"Z"``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from ..evaluate.metrics import vqa_punctuation

_PERIOD_STRIP = re.compile(r"(?<!\d)\.(?!\d)")

UNKNOWN = "Unknown"


def process_punctuation(text: str) -> str:
    """VLMEvalKit's ``process_punctuation`` (VQA-style; its period rule has a real lookbehind)."""
    return vqa_punctuation(text, _PERIOD_STRIP)


def extract_yes_no(prediction: str) -> str:
    """``"Yes"``, ``"No"`` or ``"Unknown"`` (VLMEvalKit's ``YOrN_Extraction``)."""
    words = process_punctuation(str(prediction).lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "yes" not in words and "no" in words:
        return "No"
    return UNKNOWN


_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
             "I'm sorry, but without the image provided", "Cannot determine the answer")
_OPTION_CHARS = ".()[],:;!*#{}"


def infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option letter named in ``answer`` (VLMEvalKit's ``can_infer_option``); ``"Z"`` for a refusal."""
    if "Failed to obtain answer via API" in answer:
        return None
    if any(r in answer for r in _REFUSALS):
        return "Z"
    mod = answer
    for c in _OPTION_CHARS:
        mod = mod.replace(c, " ")
    splits = [x.strip() for x in mod.split()]
    count = sum(c in splits for c in choices)
    if count == 1:
        for ch in choices:
            if ch in splits and splits.index(ch) > len(splits) - 5:
                return ch
    elif count == 0 and sum(c in splits for c in ("Z", "")) == 1:
        return "Z"
    return None


def infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The only option whose text the answer contains (VLMEvalKit's ``can_infer_text``)."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    cands = [k for k, v in choices.items() if str(v).lower() in answer]
    return cands[0] if len(cands) == 1 else None


def extract_option(prediction: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's ``can_infer``: the option letter, ``"Z"`` (refusal) or None (nothing matched)."""
    answer = str(prediction)
    return infer_option(answer, choices) or infer_text(answer, choices)
