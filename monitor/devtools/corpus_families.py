"""What a corpus is made of: families of strings, each with a weight and a grammar, drawn by weight.

A ``Family`` is one kind of string in a corpus (``monitor.devtools.corpus_mixed``,
``monitor.devtools.corpus_logs``): how to make one, how often, and which strings it allows. The helpers
below build their grammars (regular expressions of alternatives, digits) and draw from them by weight.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Generator = Callable[[random.Random], str]


@dataclass(frozen=True)
class Family:
    """One kind of string in a corpus: how to make one, how often, and which strings it allows."""

    name: str
    make: Generator
    weight: float  # percent of the corpus
    valid: Callable[[str], bool]


def matcher(pattern: str) -> Callable[[str], bool]:
    """Whether a whole string matches ``pattern``."""
    compiled = re.compile(pattern)
    return lambda text: compiled.fullmatch(text) is not None


def digits(rng: random.Random, k: int) -> str:
    """``k`` random decimal digits."""
    return "".join(rng.choices(string.digits, k=k))


def alternatives(words: Sequence[str]) -> str:
    """A regular expression (no capturing group) matching any one of ``words``."""
    return "(?:" + "|".join(map(re.escape, words)) + ")"


def picker(families: Sequence[Family]) -> Generator:
    """Draws a string from one of ``families``, each chosen in proportion to its weight."""
    cumulative, total = [], 0.0
    for family in families:
        total += family.weight
        cumulative.append(total)

    def draw(rng: random.Random) -> str:
        return rng.choices(families, cum_weights=cumulative)[0].make(rng)
    return draw
