"""Seeded corpora that look like real streams: many formats of very different frequency in one column.

``generate`` gives one identifier format per stream; real columns mix several kinds of identifier, and the
contents of log messages come from templates, some printed constantly and some once a day. Two corpora:

``mixed`` (``monitor.devtools.corpus_mixed``)
    One column of 13 identifier families whose weights span three orders of magnitude (serials 40 %, down
    to ticket ids 0.05 %): ``generate``'s serials, user ids, plates and residue triplets, plus ISO dates,
    times, private IPv4 addresses, e-mail addresses, order numbers, hex ids, phone numbers, version tags
    and ticket ids. Every family is a small grammar with fixed vocabularies and dependent fields.
``logs`` (``monitor.devtools.corpus_logs``)
    Log-message contents from 30 templates (30 % down to 0.05 %) with typed fields: counts, durations,
    IPv4 addresses, paths, user names, hex request ids, HTTP methods and status codes, host names.

Anomaly kinds (``ANOMALY_KINDS``), each a ``Task``: where its normal test rows and its anomalies come from.

``mixed``: ``rare_valid_vs_unseen``, ``char_edit_same_shape``, ``foreign_format``.
``logs``: ``rare_valid_vs_unseen``, ``unseen_template``, ``field_type_change``, ``char_edit_same_shape``.

A *signature* here is a sequence's shape with case kept (``A`` upper, ``a`` lower, ``9`` digit, other
characters kept). Nothing is downloaded; the same seed gives the same strings.
"""

from __future__ import annotations

import base64
import functools
import random
import re
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.devtools import generate
from monitor.devtools.corpus_families import Family, Generator, digits
from monitor.devtools.corpus_logs import FIELDS, LOG_FAMILIES, TEMPLATES, UNSEEN, Template, log_message
from monitor.devtools.corpus_mixed import MIXED_FAMILIES, mixed

Corruption = Callable[[str, random.Random], "str | None"]
Candidate = Callable[[random.Random], "str | None"]

RARE_WEIGHT = 1.0  # families (templates) below this share, in percent, are the rare-but-valid ones
_SIGNATURE_TABLE = str.maketrans({**{c: "A" for c in string.ascii_uppercase},
                                  **{c: "a" for c in string.ascii_lowercase},
                                  **{c: "9" for c in string.digits}})


def signature(text: str) -> str:
    """Upper-case letters to ``A``, lower-case to ``a``, digits to ``9``, other characters kept."""
    return text.translate(_SIGNATURE_TABLE)


CORPORA: dict[str, tuple[Family, ...]] = {"mixed": MIXED_FAMILIES, "logs": LOG_FAMILIES}


def family_of(corpus: str, text: str) -> str | None:
    """The family (for ``logs`` the template) ``text`` is a valid member of, or None."""
    return next((f.name for f in CORPORA[corpus] if f.valid(text)), None)


def is_valid(corpus: str, text: str) -> bool:
    """Whether ``text`` could be produced by some family of the corpus (the grammar, not a sample)."""
    return family_of(corpus, text) is not None


@functools.lru_cache(maxsize=None)
def known_signatures(corpus: str) -> frozenset[str]:
    """Signatures of a large sample of every family alike, rare ones included: the shapes the corpus makes."""
    rng = random.Random(f"{corpus}/signatures")
    per_family = 3000 if corpus == "mixed" else 300
    return frozenset(signature(f.make(rng)) for f in CORPORA[corpus] for _ in range(per_family))


# -- anomalies -----------------------------------------------------------------------------------------------

def _same_class_other(ch: str, rng: random.Random) -> str:
    pool = string.digits if ch.isdigit() else string.ascii_uppercase if ch.isupper() else string.ascii_lowercase
    return rng.choice(pool.replace(ch, ""))


def _substituted(text: str, spots: Sequence[int], corpus: str, rng: random.Random, tries: int = 30) -> str | None:
    """``text`` with one character at one of ``spots`` replaced by another of its class, invalid in
    ``corpus``; None when ``tries`` attempts all gave valid strings."""
    if not spots:
        return None
    for _ in range(tries):
        i = rng.choice(spots)
        candidate = text[:i] + _same_class_other(text[i], rng) + text[i + 1:]
        if not is_valid(corpus, candidate):
            return candidate
    return None


def char_edit_same_shape(text: str, rng: random.Random) -> str | None:
    """A mixed-column value with one letter or digit replaced by another of the same class so that no family
    allows it: a residue ``PHX``, a country ``DX``, a month ``13``, an octet ``356``, a hex digit ``q``.
    The signature stays the same; only which values are possible gives it away."""
    return _substituted(text, [i for i, ch in enumerate(text) if ch.isalnum()], "mixed", rng)


_SEPARATOR_SWAPS = {"-": ".", ".": "-", " ": "-", ":": ".", "@": ".", "+": "-"}


def _changed_separator(text: str, rng: random.Random) -> str | None:
    spots = [i for i, ch in enumerate(text) if ch in _SEPARATOR_SWAPS]
    if not spots:
        return None
    i = rng.choice(spots)
    return text[:i] + _SEPARATOR_SWAPS[text[i]] + text[i + 1:]


_RESTRUCTURINGS: tuple[Corruption, ...] = (generate.swapped_tokens, generate.dropped_token, generate.extra_token,
                                            generate.extra_separator, generate.missing_separator, _changed_separator)


def unseen_structure(text: str, rng: random.Random) -> str | None:
    """A mixed-column value rebuilt with a token structure no family produces (tokens swapped, dropped or
    repeated, a separator changed, added or removed): about the same length and characters, an unseen
    signature."""
    candidate = rng.choice(_RESTRUCTURINGS)(text, rng)
    if candidate is None or is_valid("mixed", candidate) or signature(candidate) in known_signatures("mixed"):
        return None
    return candidate


def _card(rng: random.Random) -> str:
    return f"4{digits(rng, 3)} {digits(rng, 4)} {digits(rng, 4)} {digits(rng, 4)}"


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _token(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(rng.choice((12, 16)))).decode("ascii")


def _url(rng: random.Random) -> str:
    host = rng.choice(("www.example.org", "shop.example.com", "docs.example.net"))
    return f"https://{host}/{rng.choice(('products', 'orders', 'guides'))}/{rng.randint(1, 9999)}"


FOREIGN_FORMATS: dict[str, Generator] = {"card": _card, "mac": _mac, "uuid": _uuid, "base64": _token,
                                         "url": _url}


def foreign_format(rng: random.Random) -> str:
    """A whole value of a format the mixed column never carries: card-like numbers, MAC addresses, UUIDs,
    base64 tokens, URLs."""
    return rng.choice(list(FOREIGN_FORMATS.values()))(rng)


def _parse_log(text: str) -> tuple[Template, list[tuple[int, int]]] | None:
    """The template ``text`` comes from and the span of each of its fields."""
    for template in TEMPLATES:
        match = template.pattern.fullmatch(text)
        if match:
            return template, [match.span(i + 1) for i in range(len(template.fields))]
    return None


def misspelled_keyword(text: str, rng: random.Random) -> str | None:
    """A log message with one letter of a template word (at least three letters) or of its HTTP method
    replaced by another letter of the same case: ``Conmection``, ``GXT``. The signature stays the same."""
    parsed = _parse_log(text)
    if parsed is None:
        return None
    template, spans = parsed
    in_field = {i for start, end in spans for i in range(start, end)}
    methods = {i for name, (start, end) in zip(template.fields, spans) if name == "method" for i in range(start, end)}
    words = [i for m in re.finditer("[A-Za-z]{3,}", text) if not in_field & set(range(*m.span()))
             for i in range(*m.span())]
    return _substituted(text, words + sorted(methods), "logs", rng)


# Fields a value of another type can be put into by ``field_type_change`` (vocabulary-only fields too).
_VALUE_TYPES = ("int", "ms", "ip", "path", "user", "hex", "file", "host", "status", "method", "pct", "table")


def field_type_change(text: str, rng: random.Random, tries: int = 10) -> str | None:
    """A log message with one field holding a value of another type: a path where a count goes, a user
    where an address goes, an address where a status goes."""
    parsed = _parse_log(text)
    if parsed is None or not parsed[1]:
        return None
    template, spans = parsed
    for _ in range(tries):
        k = rng.randrange(len(spans))
        other = rng.choice([t for t in _VALUE_TYPES if t != template.fields[k]])
        start, end = spans[k]
        candidate = text[:start] + FIELDS[other].make(rng, {}) + text[end:]
        if not is_valid("logs", candidate):
            return candidate
    return None


def unseen_template(rng: random.Random) -> str:
    """A message from a template the corpus never prints (same fields and words: ``corpus_logs.UNSEEN_TEMPLATES``)."""
    return rng.choice(UNSEEN).make(rng)


def restructured_message(text: str, rng: random.Random) -> str | None:
    """A log message with its words rearranged as no template has them: two neighbours swapped, one
    dropped or one repeated."""
    words = text.split(" ")
    op = rng.choice(("swap", "drop", "repeat"))
    i = rng.randrange(len(words))
    if op == "swap":
        if i + 1 == len(words) or words[i] == words[i + 1]:
            return None
        words[i], words[i + 1] = words[i + 1], words[i]
    elif op == "drop" and len(words) > 2:
        del words[i]
    else:
        words.insert(i, words[i])
    candidate = " ".join(words)
    if is_valid("logs", candidate) or signature(candidate) in known_signatures("logs"):
        return None
    return candidate


# -- tasks ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """One anomaly kind of a corpus: how its normal test rows and its candidate anomalies are drawn.

    ``anomaly`` may return None or a valid string; ``anomalies`` filters those out."""

    normal: Generator
    anomaly: Candidate
    doc: str


def _rare_heavy(corpus: str, draw: Generator) -> Generator:
    """Half the rows from the corpus as it is, half from its rare families alone (uniformly)."""
    rare = [f for f in CORPORA[corpus] if f.weight < RARE_WEIGHT]

    def draw_rare_heavy(rng: random.Random) -> str:
        return draw(rng) if rng.random() < 0.5 else rng.choice(rare).make(rng)
    return draw_rare_heavy


def _corrupting(source: Generator, corruption: Corruption) -> Candidate:
    return lambda rng: corruption(source(rng), rng)


def _tasks(corpus: str, draw: Generator, corruptions: dict[str, Corruption],
           fresh: dict[str, Generator], restructure: Corruption) -> dict[str, Task]:
    rare_heavy = _rare_heavy(corpus, draw)
    tasks = {"rare_valid_vs_unseen": Task(
        rare_heavy, _corrupting(rare_heavy, restructure),
        "normal rows over-represent the rare families (half drawn from them alone); the anomalies are "
        "values of the same mix with a token structure no family produces (" + restructure.__name__ + ")")}
    tasks.update({kind: Task(draw, _corrupting(draw, fn), fn.__doc__ or "") for kind, fn in corruptions.items()})
    tasks.update({kind: Task(draw, fn, fn.__doc__ or "") for kind, fn in fresh.items()})
    return tasks


TASKS: dict[str, dict[str, Task]] = {
    "mixed": _tasks("mixed", mixed, {"char_edit_same_shape": char_edit_same_shape},
                    {"foreign_format": foreign_format}, unseen_structure),
    "logs": _tasks("logs", log_message, {"field_type_change": field_type_change,
                                         "char_edit_same_shape": misspelled_keyword},
                   {"unseen_template": unseen_template}, restructured_message),
}
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {corpus: tuple(tasks) for corpus, tasks in TASKS.items()}
_GENERATORS: dict[str, Generator] = {"mixed": mixed, "logs": log_message}


def sample(corpus: str, n: int, seed: int = 0) -> list[str]:
    """``n`` normal sequences of ``corpus`` (``mixed`` or ``logs``), as training data."""
    rng = random.Random(seed)
    make = _GENERATORS[corpus]
    return [make(rng) for _ in range(n)]


def normal_test(corpus: str, kind: str, n: int, seed: int = 0) -> list[str]:
    """``n`` normal test rows for one task: like ``sample``, except where the task draws them otherwise
    (``rare_valid_vs_unseen``)."""
    rng = random.Random(seed)
    make = TASKS[corpus][kind].normal
    return [make(rng) for _ in range(n)]


def anomalies(corpus: str, kind: str, n: int, normal: set[str], seed: int = 0) -> list[str]:
    """``n`` abnormal sequences of one kind for ``corpus``; none is valid in the corpus or in ``normal``.

    Returns fewer than ``n`` when candidates are rarely usable (not expected for these kinds).
    """
    rng = random.Random(f"{corpus}/{kind}/{seed}")
    draw = TASKS[corpus][kind].anomaly
    out: list[str] = []
    for _ in range(n * 20):
        if len(out) == n:
            break
        candidate = draw(rng)
        if candidate and candidate not in normal and not is_valid(corpus, candidate):
            out.append(candidate)
    return out
