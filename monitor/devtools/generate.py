"""Seeded synthetic streams: realistic identifier formats and the ways they go wrong.

Formats are small grammars with the dependencies real identifiers have (a product line fixes the number of
digits and whether a suffix follows; a country code goes with a range of account numbers), so that an
anomaly can keep a familiar *shape* and still be impossible. Demo, load generator, tests and the quality
benchmark all draw from here; ``run_generate`` is what ``python -m monitor generate`` does with them.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

from monitor.errors import InputError
from monitor.stream.files import open_output

Generator = Callable[[random.Random], str]

RESIDUES = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
            "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
# Residue frequencies follow their abundance in proteins (roughly), so rare residues are legitimately rare.
_RESIDUE_WEIGHTS = (8.3, 5.5, 4.1, 5.5, 1.4, 3.9, 6.8, 7.1, 2.3, 6.0,
                    9.7, 5.8, 2.4, 3.9, 4.7, 6.6, 5.4, 1.1, 2.9, 6.9)
# Product lines: prefix -> (digits, suffix letters or "" for none).
_SERIAL_LINES = {"AB": (3, "EFG"), "DN": (3, ""), "KQ": (4, ""), "RT": (4, "XZ"), "MV": (2, "")}
_SERIAL_WEIGHTS = (40, 25, 15, 12, 8)
# User ids: country -> account-number prefix digit ranges.
_UID_COUNTRIES = {"DE": "12", "FR": "34", "US": "0156", "GB": "7", "JP": "89"}


def serial(rng: random.Random) -> str:
    """Product serials like ``AB121E``, ``DN176``, ``KQ4411``: the line fixes digits and suffix."""
    prefix = rng.choices(list(_SERIAL_LINES), _SERIAL_WEIGHTS)[0]
    digits, suffixes = _SERIAL_LINES[prefix]
    body = "".join(rng.choices(string.digits, k=digits))
    return prefix + body + (rng.choice(suffixes) if suffixes else "")


def uid(rng: random.Random) -> str:
    """User ids like ``usr-104512-DE``: the first digit of the account depends on the country."""
    country = rng.choice(list(_UID_COUNTRIES))
    account = rng.choice(_UID_COUNTRIES[country]) + "".join(rng.choices(string.digits, k=5))
    return f"usr-{account}-{country}"


def residues(rng: random.Random) -> str:
    """Amino-acid triplets like ``PHE-SER-CYS`` (sometimes four residues)."""
    k = 3 if rng.random() < 0.85 else 4
    return "-".join(rng.choices(RESIDUES, _RESIDUE_WEIGHTS, k=k))


def plate(rng: random.Random) -> str:
    """The seed's four-part codes like ``GX 567 FR 2``: region letters follow the prefix's first letter."""
    first = rng.choice("GHKM")
    region = {"G": ("FR", "ER"), "H": ("DS", "DT"), "K": ("AB", "AC"), "M": ("ZZ", "ZY")}[first]
    return f"{first}{rng.choice('XYQ')} {rng.randint(100, 999)} {rng.choice(region)} {rng.randint(1, 9)}"


FORMATS: dict[str, Generator] = {"serial": serial, "uid": uid, "residues": residues, "plate": plate}


_RESIDUE = "(?:" + "|".join(RESIDUES) + ")"
_VALID = {
    "serial": re.compile("|".join(f"{p}[0-9]{{{d}}}" + (f"[{s}]" if s else "") for p, (d, s) in _SERIAL_LINES.items())),
    "uid": re.compile("|".join(f"usr-[{firsts}][0-9]{{5}}-{c}" for c, firsts in _UID_COUNTRIES.items())),
    "residues": re.compile(f"{_RESIDUE}(?:-{_RESIDUE}){{2,3}}"),
    "plate": re.compile("G[XYQ] [1-9][0-9]{2} (?:FR|ER) [1-9]|H[XYQ] [1-9][0-9]{2} (?:DS|DT) [1-9]|"
                        "K[XYQ] [1-9][0-9]{2} (?:AB|AC) [1-9]|M[XYQ] [1-9][0-9]{2} (?:ZZ|ZY) [1-9]"),
}


def is_valid(fmt: str, text: str) -> bool:
    """Whether ``text`` is a well-formed sequence of format ``fmt`` (the grammar, not just a sample)."""
    return _VALID[fmt].fullmatch(text) is not None


def shape_key(text: str) -> str:
    """Letters to ``A`` and digits to ``9``, other characters kept: what a shape-only check sees."""
    return "".join("A" if c.isalpha() else "9" if c.isdigit() else c for c in text)


def sample(fmt: str, n: int, seed: int = 0) -> list[str]:
    """``n`` normal sequences of format ``fmt``."""
    rng = random.Random(seed)
    make = FORMATS[fmt]
    return [make(rng) for _ in range(n)]


# -- corruptions ---------------------------------------------------------------------------------------------
# Each takes a normal sequence and returns an abnormal variant, or None when it does not apply to it.

_SEPARATORS = "- "


def _parts(text: str) -> list[str]:
    """Alternating runs of alphanumerics and separators, e.g. ``GX 567`` -> [GX, ' ', 567]."""
    parts: list[str] = []
    for ch in text:
        kind = ch.isalnum()
        if parts and parts[-1][0].isalnum() == kind:
            parts[-1] += ch
        else:
            parts.append(ch)
    return parts


def _tokens(text: str) -> list[int]:
    parts = _parts(text)
    return [i for i, p in enumerate(parts) if p[0].isalnum()]


def swapped_tokens(text: str, rng: random.Random) -> str | None:
    parts, idx = _parts(text), _tokens(text)
    if len(idx) < 2:  # no separators: swap two adjacent different characters instead
        spots = [i for i in range(len(text) - 1) if text[i] != text[i + 1]]
        if not spots:
            return None
        i = rng.choice(spots)
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    pairs = [(a, b) for a, b in zip(idx, idx[1:]) if parts[a] != parts[b]]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    parts[a], parts[b] = parts[b], parts[a]
    return "".join(parts)


def dropped_token(text: str, rng: random.Random) -> str | None:
    parts, idx = _parts(text), _tokens(text)
    if len(idx) < 2:
        return None
    i = rng.choice(idx)
    if i + 1 < len(parts):
        del parts[i: i + 2]  # the token and the separator after it
    else:
        del parts[i - 1: i + 1]  # the last token and the separator before it
    return "".join(parts)


def extra_token(text: str, rng: random.Random) -> str | None:
    parts, idx = _parts(text), _tokens(text)
    if len(idx) < 2:
        return None
    sep = parts[idx[0] + 1]
    i = rng.choice(idx)
    parts[i: i] = [parts[rng.choice(idx)], sep]
    return "".join(parts)


def dropped_char(text: str, rng: random.Random) -> str | None:
    spots = [i for i, ch in enumerate(text) if ch.isalnum()]
    i = rng.choice(spots)
    return text[:i] + text[i + 1:]


def extra_char(text: str, rng: random.Random) -> str | None:
    i = rng.randrange(1, len(text) + 1)
    neighbour = text[i - 1]
    pool = string.digits if neighbour.isdigit() else string.ascii_uppercase if neighbour.isupper() else \
        string.ascii_lowercase if neighbour.islower() else string.ascii_uppercase + string.digits
    return text[:i] + rng.choice(pool) + text[i:]


def case_change(text: str, rng: random.Random) -> str | None:
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if not letters:
        return None
    if rng.random() < 0.5:
        return text.swapcase()
    i = rng.choice(letters)
    return text[:i] + text[i].swapcase() + text[i + 1:]


def extra_separator(text: str, rng: random.Random) -> str | None:
    spots = [i for i in range(1, len(text)) if text[i - 1].isalnum() and text[i].isalnum()]
    if not spots:
        return None
    i = rng.choice(spots)
    return text[:i] + rng.choice(_SEPARATORS) + text[i:]


def missing_separator(text: str, rng: random.Random) -> str | None:
    spots = [i for i, ch in enumerate(text) if not ch.isalnum()]
    if not spots:
        return None
    i = rng.choice(spots)
    return text[:i] + text[i + 1:]


def other_shape_same_length(text: str, rng: random.Random) -> str | None:
    """Same length, same separators, but letters and digits trade places in every token."""
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(rng.choice(string.ascii_uppercase))
        elif ch.isalpha():
            out.append(rng.choice(string.digits))
        else:
            out.append(ch)
    return "".join(out)


def rare_token(text: str, rng: random.Random) -> str | None:
    """A letter run replaced by letters of the same shape that the format never uses."""
    parts = _parts(text)
    letters = [i for i, p in enumerate(parts) if p.isalpha() and len(p) <= 3]
    if not letters:
        letters = [i for i, p in enumerate(parts) if p[:2].isalpha() and p[:2].isupper()]
        if not letters:
            return None
        i = rng.choice(letters)
        parts[i] = rng.choice(("QX", "ZW", "JJ", "WQ")) + parts[i][2:]
        return "".join(parts)
    i = rng.choice(letters)
    p = parts[i]
    fake = "".join(rng.choice("JQWXZ") for _ in p)
    parts[i] = fake if p.isupper() else fake.lower()
    return "".join(parts)


def impossible_combination(text: str, rng: random.Random) -> str | None:
    """Valid parts in a combination the format never makes (only formats with such rules)."""
    if text.startswith("usr-"):
        _, account, country = text.split("-")
        wrong = [c for c, firsts in _UID_COUNTRIES.items() if account[0] not in firsts]
        return f"usr-{account}-{rng.choice(wrong)}"
    if " " in text:
        first, second, region, digit = text.split(" ")
        wrong = {"G": "DS", "H": "AB", "K": "ZZ", "M": "FR"}[first[0]]
        return f"{first} {second} {wrong} {digit}"
    prefix = text[:2]
    if prefix not in _SERIAL_LINES:
        return None
    other = rng.choice([p for p in _SERIAL_LINES if p != prefix])
    return other + text[2:]


CORRUPTIONS: dict[str, Callable[[str, random.Random], str | None]] = {
    "swapped_tokens": swapped_tokens,
    "dropped_token": dropped_token,
    "extra_token": extra_token,
    "dropped_char": dropped_char,
    "extra_char": extra_char,
    "case_change": case_change,
    "extra_separator": extra_separator,
    "missing_separator": missing_separator,
    "other_shape_same_length": other_shape_same_length,
    "rare_token": rare_token,
    "impossible_combination": impossible_combination,
}


def anomalies(fmt: str, kind: str, n: int, normal: set[str], seed: int = 0) -> list[str]:
    """``n`` abnormal sequences of one kind for format ``fmt``; none is valid in the format or in ``normal``.

    ``kind`` is a corruption name or ``other_format`` (sequences of the other formats). Returns fewer than
    ``n`` (possibly none) when the corruption rarely applies to the format.
    """
    rng = random.Random(f"{fmt}/{kind}/{seed}")
    out: list[str] = []
    for _ in range(n * 20):
        if len(out) == n:
            break
        if kind == "other_format":
            candidate: str | None = FORMATS[rng.choice([f for f in FORMATS if f != fmt])](rng)
        else:
            candidate = CORRUPTIONS[kind](FORMATS[fmt](rng), rng)
        if candidate and candidate not in normal and not is_valid(fmt, candidate):
            out.append(candidate)
    return out


ANOMALY_KINDS = ("other_format", *CORRUPTIONS)


def run_generate(fmt: str, count: int, anomaly_kind: str | None, seed: int, output: str) -> int:
    """``python -m monitor generate``: ``count`` sequences of ``fmt``, or with ``anomaly_kind`` abnormal ones of
    that kind, one a line, to ``output`` (a file, or ``-`` for standard output)."""
    if count < 0:
        raise InputError(f"--count must not be negative, got {count}")
    if anomaly_kind:
        lines = anomalies(fmt, anomaly_kind, count, set(), seed=seed)
    else:
        lines = sample(fmt, count, seed=seed)
    with open_output(output) as out:
        out.writelines(f"{line}\n" for line in lines)
    return 0
