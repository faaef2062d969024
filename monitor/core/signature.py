"""A sequence's *format*: its shape with character classes and run lengths, separators kept.

``signature("AB121E") == "AA999A"``, ``signature("2024-03-17") == "9999-99-99"``,
``signature("usr-104512-DE") == "aaa-9{6}-AA"``. The rules, in order:

- characters fall in classes: ASCII upper case ``A``, lower case ``a``, digits ``9``, any other letter or
  digit ``L``; printable ASCII punctuation and the space are kept as they are; any other character is ``~``;
- a *token* is a run of letters and digits. A token of at most three class runs is written run by run, a
  run of up to four characters as that many class letters, a longer one as the letter and its length
  (``9{6}``). A token that switches class more often (a hex id, a base-64 key) is its classes and length:
  ``[9a]{32}``. In a string holding a lower-case hex token (digits and ``a``-``f`` mixed, four characters or
  more), every token of four or more digits and ``a``-``f`` letters is written so: a UUID has one format
  (``[9a]{8}-[9a]{4}-[9a]{4}-[9a]{4}-[9a]{12}``), not one per pattern of its groups;
- a run of one separator character longer than three is written ``-{8}``;
- a long or free-text value (over ``FINE_MAX_CHARS`` characters or ``FINE_MAX_TOKENS`` tokens) gets the
  coarse form: each token its classes only (``Aa+`` is not used: ``[Aa]+``, ``9+``), each separator run one
  character, at most ``COARSE_MAX_TOKENS`` tokens and then ``…``. Log lines from one template share one.

So the number of formats a stream can have stays bounded by its real variety, and a format is readable as
is. ``FormatReader`` reads many sequences at once: one ``str.translate`` over the batch joined maps every
string to its class string, and a memo of class strings gives the signature (a batch of one class string,
one kind of identifier, is told by a single comparison).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EMPTY = "(empty)"
"""The format of the empty string."""
FINE_MAX_CHARS = 40
FINE_MAX_TOKENS = 10
COARSE_MAX_TOKENS = 24
_LITERAL_RUN = 4  # class runs up to this long are written out
_LITERAL_SEPARATORS = 3
_MIXED_RUNS = 3  # a token with more class runs than this is written as its classes and length
_CLASS_ORDER = "9AaL"
_TOKEN_CLASSES = "9AahL"
_MEMO_LIMIT = 200_000

_HEX_MIN = 4
# ASCII upper -> A, lower -> a (h for the hex letters a-f, told apart for the hex rule), digit -> 9,
# printable punctuation and space kept, control characters -> ~.
_TABLE = str.maketrans({**{chr(c): "~" for c in range(128) if not 32 <= c < 127},
                        **{c: "A" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
                        **{c: "h" for c in "abcdef"}, **{c: "a" for c in "ghijklmnopqrstuvwxyz"},
                        **{c: "9" for c in "0123456789"}})
_JOINED_TABLE = {**_TABLE, ord("\n"): "\n"}  # the batch's own separator stays
_PIECES = re.compile(r"[9AahL]+|([^9AahL])\1*")
_CLASS_RUNS = re.compile(r"9+|A+|a+|L+")
_HEX_TOKEN = re.compile(r"[9h]{%d,}" % _HEX_MIN)


def class_string(text: str) -> str:
    """Each character replaced by its class (``A``, ``a``, ``9``, ``L``; ``h`` for ``a``-``f``) or kept
    (punctuation) or ``~``."""
    classes = text.translate(_TABLE)
    return classes if classes.isascii() else _classify_wide(classes)


def _classify_wide(classes: str) -> str:
    return "".join(c if c.isascii() else "L" if c.isalnum() else "~" for c in classes)


def signature(text: str) -> str:
    """The format of ``text`` (see the module docstring).

    >>> [signature(s) for s in ("AB121E", "PHE-SER-CYS", "", "0x1f3a9c0de4b7")]
    ['AA999A', 'AAA-AAA-AAA', '(empty)', '[9a]{14}']
    """
    return of_classes(class_string(text))


def of_classes(classes: str) -> str:
    """The format of a string whose ``class_string`` is ``classes``."""
    if not classes:
        return EMPTY
    pieces = [m.group(0) for m in _PIECES.finditer(classes)]
    tokens = sum(1 for p in pieces if p[0] in _TOKEN_CLASSES)
    if len(classes) > FINE_MAX_CHARS or tokens > FINE_MAX_TOKENS:
        return _coarse([p.replace("h", "a") for p in pieces])
    hex_string = any(_is_hex(p) for p in pieces)
    return "".join(f"[9a]{{{len(p)}}}" if hex_string and _HEX_TOKEN.fullmatch(p)
                   else _fine_token(p.replace("h", "a")) if p[0] in _TOKEN_CLASSES else _separator(p)
                   for p in pieces)


def _is_hex(piece: str) -> bool:
    return _HEX_TOKEN.fullmatch(piece) is not None and "9" in piece and "h" in piece


def _fine_token(token: str) -> str:
    runs = [m.group(0) for m in _CLASS_RUNS.finditer(token)]
    if len(runs) > _MIXED_RUNS:
        return f"[{_classes_in(token)}]{{{len(token)}}}"
    return "".join(run if len(run) <= _LITERAL_RUN else f"{run[0]}{{{len(run)}}}" for run in runs)


def _separator(run: str) -> str:
    return run if len(run) <= _LITERAL_SEPARATORS else f"{run[0]}{{{len(run)}}}"


def _classes_in(token: str) -> str:
    return "".join(c for c in _CLASS_ORDER if c in token)


def _coarse(pieces: list[str]) -> str:
    out, tokens = [], 0
    for piece in pieces:
        if piece[0] in _TOKEN_CLASSES:
            tokens += 1
            if tokens > COARSE_MAX_TOKENS:
                out.append("…")
                break
            classes = _classes_in(piece)
            out.append(f"{classes}+" if len(classes) == 1 else f"[{classes}]+")
        else:
            out.append(piece[0])
    return "".join(out)


def _class_strings(sequences: Sequence[str], joined: str) -> list[str]:
    """``str.translate`` of each sequence, from ``joined``: the batch joined by newlines and translated in
    one call (a twentieth of the cost of one call per string), unless a sequence holds a newline itself."""
    if not sequences:
        return []
    parts = joined.split("\n")
    if len(parts) == len(sequences):
        return parts
    return list(map(str.translate, sequences, itertools.repeat(_TABLE, len(sequences))))


@dataclass(frozen=True)
class Formats:
    """The formats of a batch: ``names[ids[i]]`` is sequence ``i``'s; ``names`` holds each once."""

    ids: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def of_each(self) -> list[str]:
        """Each sequence's format, aligned with the batch."""
        return [self.names[i] for i in self.ids.tolist()]


class FormatReader:
    """Formats of many sequences at once, memoized by class string (not thread-safe: one per thread)."""

    def __init__(self, memo_limit: int = _MEMO_LIMIT) -> None:
        self.memo_limit = memo_limit
        self._memo: dict[str, str] = {}

    def read(self, sequences: Sequence[str]) -> Formats:
        n = len(sequences)
        joined = "\n".join(sequences).translate(_JOINED_TABLE) if n else ""
        first = joined.split("\n", 1)[0]
        # The usual batch of one kind of identifier: a single class string, told by one comparison (exact:
        # a sequence holding a newline makes the lengths differ).
        if n and joined == "\n".join(itertools.repeat(first, n)):
            return Formats(np.zeros(n, dtype=np.int32), [self._name(first)])
        classes = _class_strings(sequences, joined)
        distinct = dict.fromkeys(classes)  # each class string once, in order of first appearance
        position = {key: i for i, key in enumerate(distinct)}
        names_of_keys = [self._name(key) for key in distinct]
        # Two class strings can share a format (e.g. a hex token of any class pattern): one id per name.
        name_ids: dict[str, int] = {}
        key_to_id = np.array([name_ids.setdefault(n, len(name_ids)) for n in names_of_keys], dtype=np.int32)
        rows = np.fromiter(map(position.__getitem__, classes), dtype=np.int32, count=len(classes))
        return Formats(key_to_id[rows], list(name_ids))

    def _name(self, key: str) -> str:
        name = self._memo.get(key)
        if name is None:
            if len(self._memo) >= self.memo_limit:
                self._memo.clear()  # bounded: a stream of ever-new shapes costs time, never memory
            name = self._memo[key] = of_classes(key if key.isascii() else _classify_wide(key))
        return name
