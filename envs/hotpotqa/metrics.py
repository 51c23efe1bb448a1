"""Answer scoring as in SQuAD and HotpotQA: normalisation, exact match and token F1.

The normalisation lower-cases, removes punctuation, removes the articles ``a``/``an``/``the``
and collapses whitespace. As in the HotpotQA evaluation, a ``yes``/``no``/``noanswer``
prediction or gold answer only scores F1 when both sides are the same word.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_parts(prediction: str, gold: str) -> tuple[float, float, float]:
    """(F1, precision, recall) of the normalised tokens of ``prediction`` against ``gold``."""
    pred = normalize_answer(prediction)
    ref = normalize_answer(gold)
    if (pred in _SPECIAL or ref in _SPECIAL) and pred != ref:
        return 0.0, 0.0, 0.0
    pred_tokens = pred.split()
    ref_tokens = ref.split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1_score(prediction: str, gold: str) -> float:
    """Token-level F1 of ``prediction`` against ``gold`` after normalisation."""
    return f1_parts(prediction, gold)[0]


__all__ = ["exact_match", "f1_parts", "f1_score", "normalize_answer"]
