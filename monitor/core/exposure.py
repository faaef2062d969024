"""Outlier exposure: synthetic corruptions of held-out training strings, from which training learns how much
each signal of the fused score weighs (``learn_weights``, called by ``monitor.core.fusion.fit_fusion``).

Training has no anomalies, only normal strings. But it can make strings that are *probably* abnormal out of
normal ones, by the small mistakes identifiers and messages suffer: a character dropped, doubled or swapped
with its neighbour, replaced by another of its class, its case flipped, a separator added, removed or
changed, a token dropped, repeated or moved, or a token taken from a string of another format (a value of a
neighbouring family). Held-out training strings against their own corruptions tell which signal separates
the two on *this* data: a format whose variants all keep their shape makes the shape signal blind, a column
of short codes the autoencoder reconstructs no better than a character model makes its error add noise.

Everything here is made from the training strings given, with a seeded ``random.Random``; nothing comes from
elsewhere. A corruption equal to a training string is dropped (it is normal, not abnormal); one that happens
to be a valid but unseen value stays, label noise the learning tolerates.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

import numpy as np


Corruption = Callable[[str, random.Random, "Donors"], "str | None"]


class Donors:
    """What a corruption may borrow: the separators of the training strings and the tokens of other held-out
    strings (for the neighbouring-family corruption)."""

    def __init__(self, strings: Sequence[str], seed: int) -> None:
        self.strings = list(strings)
        self.separators = sorted({c for s in self.strings[:5000] for c in s if not c.isalnum()}) or ["-"]
        self._rng = random.Random(seed)

    def other(self, text: str, tries: int = 8) -> str | None:
        """Another held-out string, of another shape than ``text`` when one is found in a few tries."""
        if len(self.strings) < 2:
            return None
        for _ in range(tries):
            candidate = self._rng.choice(self.strings)
            if _classes(candidate) != _classes(text):
                return candidate
        return None


def _classes(text: str) -> str:
    return "".join("9" if c.isdigit() else "A" if c.isupper() else "a" if c.isalpha() else c for c in text)


def _alnum_runs(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of letters and digits."""
    runs, start = [], None
    for i, c in enumerate(text + " "):
        if c.isalnum() and i < len(text):
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i))
            start = None
    return runs


def drop_char(text: str, rng: random.Random, _: Donors) -> str | None:
    if len(text) < 2:
        return None
    i = rng.randrange(len(text))
    return text[:i] + text[i + 1:]


def double_char(text: str, rng: random.Random, _: Donors) -> str | None:
    i = rng.randrange(len(text))
    return text[: i + 1] + text[i:]


def transpose_chars(text: str, rng: random.Random, _: Donors) -> str | None:
    spots = [i for i in range(len(text) - 1) if text[i] != text[i + 1]]
    if not spots:
        return None
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


_POOLS = {"9": "0123456789", "A": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "a": "abcdefghijklmnopqrstuvwxyz"}


def substitute_char(text: str, rng: random.Random, _: Donors) -> str | None:
    """One letter (or, in a string without letters, one digit) replaced by another of its class: the shape
    stays, the value may become impossible."""
    letters = [i for i, c in enumerate(text) if c.isascii() and c.isalpha()]
    spots = letters or [i for i, c in enumerate(text) if c.isascii() and c.isdigit()]
    if not spots:
        return None
    i = rng.choice(spots)
    pool = _POOLS[_classes(text[i])]
    return text[:i] + rng.choice(pool.replace(text[i], "")) + text[i + 1:]


def flip_case(text: str, rng: random.Random, _: Donors) -> str | None:
    letters = [i for i, c in enumerate(text) if c.isalpha() and c.swapcase() != c]
    if not letters:
        return None
    if rng.random() < 0.3:
        return text.swapcase()
    i = rng.choice(letters)
    return text[:i] + text[i].swapcase() + text[i + 1:]


def change_separator(text: str, rng: random.Random, donors: Donors) -> str | None:
    """A separator added between two letters or digits, removed, or replaced by another the data uses."""
    separators = [i for i, c in enumerate(text) if not c.isalnum()]
    inside = [i for i in range(1, len(text)) if text[i - 1].isalnum() and text[i].isalnum()]
    choice = rng.randrange(3)
    if choice == 0 and inside or not separators:
        if not inside:
            return None
        i = rng.choice(inside)
        return text[:i] + rng.choice(donors.separators) + text[i:]
    i = rng.choice(separators)
    if choice == 1:
        return text[:i] + text[i + 1:]
    others = [s for s in donors.separators if s != text[i]] or [s for s in "-_. /:" if s != text[i]]
    return text[:i] + rng.choice(others) + text[i + 1:]


def move_token(text: str, rng: random.Random, _: Donors) -> str | None:
    """A token (a run of letters and digits) dropped, repeated, or swapped with the next one."""
    runs = _alnum_runs(text)
    if len(runs) < 2:
        return None
    k = rng.randrange(len(runs))
    start, end = runs[k]
    choice = rng.randrange(3)
    if choice == 0:  # dropped with the separator after it (before it, for the last token)
        cut_end = runs[k + 1][0] if k + 1 < len(runs) else end
        cut_start = start if k + 1 < len(runs) else runs[k - 1][1]
        return text[:cut_start] + text[cut_end:]
    if choice == 1:  # repeated, with the separator that follows it (or precedes it)
        gap = text[end: runs[k + 1][0]] if k + 1 < len(runs) else text[runs[k - 1][1]: start]
        return text[:start] + text[start:end] + gap + text[start:]
    if k + 1 == len(runs):
        k -= 1
    (a0, a1), (b0, b1) = runs[k], runs[k + 1]
    if text[a0:a1] == text[b0:b1]:
        return None
    return text[:a0] + text[b0:b1] + text[a1:b0] + text[a0:a1] + text[b1:]


def borrow_token(text: str, rng: random.Random, donors: Donors) -> str | None:
    """A token replaced by the token at the same place of a string of another shape (or the string's tail
    from a character on taken from it, for strings of one token): a value of a neighbouring family."""
    other = donors.other(text)
    if other is None:
        return None
    mine, theirs = _alnum_runs(text), _alnum_runs(other)
    if len(mine) >= 2 and theirs:
        k = rng.randrange(len(mine))
        start, end = mine[k]
        o_start, o_end = theirs[min(k, len(theirs) - 1)]
        return text[:start] + other[o_start:o_end] + text[end:]
    cut = rng.randrange(1, max(2, min(len(text), len(other))))
    return text[:cut] + other[cut:]


CORRUPTIONS: dict[str, Corruption] = {
    "drop_char": drop_char, "double_char": double_char, "transpose_chars": transpose_chars,
    "substitute_char": substitute_char, "flip_case": flip_case, "change_separator": change_separator,
    "move_token": move_token, "borrow_token": borrow_token,
}


def corrupt(strings: Sequence[str], per_kind: int, training: Container[str],
            seed: int) -> dict[str, tuple[list[int], list[str]]]:
    """Per kind (``CORRUPTIONS``), up to ``per_kind`` corruptions of strings drawn from ``strings`` (held-out
    training strings), none of them in ``training``, with the index in ``strings`` of the string each was
    made from. Seeded: the same arguments give the same corruptions. Kinds that do not apply to these strings
    (no separators to change) come out short or empty.
    """
    donors = Donors(strings, seed)
    out: dict[str, tuple[list[int], list[str]]] = {}
    for name, corruption in CORRUPTIONS.items():
        rng = random.Random(f"{seed}/{name}")
        sources: list[int] = []
        made: list[str] = []
        for _ in range(per_kind * 4):
            if len(made) == per_kind or not strings:
                break
            i = rng.randrange(len(strings))
            candidate = corruption(strings[i], rng, donors)
            if candidate and candidate not in training:
                sources.append(i)
                made.append(candidate)
        out[name] = (sources, made)
    return out


# -- learning the weights -----------------------------------------------------------------------------------

GRID_STEPS = 4  # per signal: the weights tried go in quarters (91 vectors for three signals, 1 1 1 among them)
PENALTY = 0.01  # per unit of squared distance from equal weights, in mean log-loss (docs/benchmarks.md)
CLIP = 30.0  # -log p beyond this counts as this (p below 1e-13): a few extreme values do not set the weights


def weight_grid(signals: int) -> np.ndarray:
    """Every vector of ``signals`` non-negative weights in steps of ``1 / GRID_STEPS`` that sums to
    ``signals`` (so equal weights, all 1, are one of them), in a fixed order."""
    steps = GRID_STEPS * signals
    rows = [c for c in itertools.product(range(steps + 1), repeat=signals) if sum(c) == steps]
    return np.array(rows, dtype=np.float64) * signals / steps


def _logistic_loss(x: np.ndarray, y: np.ndarray, weights: np.ndarray, start: np.ndarray) -> tuple[float, np.ndarray]:
    """The least weighted log-loss of ``P(abnormal) = sigmoid(a * x + b)`` over ``(a, b)``, and ``(a, b)``:
    Newton's method from ``start``, each step halved until the loss falls, a tiny ridge on ``a`` keeping it
    finite when ``x`` separates perfectly."""
    design = np.c_[x, np.ones(len(x))]
    ridge = np.array([1e-6, 0.0])

    def loss_of(theta: np.ndarray) -> float:
        z = design @ theta
        return float(np.sum(weights * (np.logaddexp(0.0, z) - y * z)) + 0.5 * ridge @ theta ** 2)

    theta, loss = start.copy(), loss_of(start)
    for _ in range(50):
        mu = np.exp(-np.logaddexp(0.0, -(design @ theta)))
        gradient = design.T @ (weights * (mu - y)) + ridge * theta
        hessian = (design * (weights * mu * (1 - mu))[:, None]).T @ design + np.diag(ridge + 1e-12)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(30):
            candidate = theta - step
            candidate_loss = loss_of(candidate)
            if candidate_loss <= loss:
                break
            step = step / 2
        else:
            break
        converged = loss - candidate_loss < 1e-12
        theta, loss = candidate, candidate_loss
        if converged:
            break
    return loss, theta


def learn_weights(normal: Mapping[str, np.ndarray], abnormal: Mapping[str, Mapping[str, np.ndarray]],
                  signals: Sequence[str]) -> tuple[tuple[float, ...], dict[str, Any]]:
    """The weights of ``signals`` in the fused score ``sum(w * -log p)``, learned from ``-log p`` of held-out
    rows (``normal``, per signal) and of their corruptions (``abnormal``, per kind then signal).

    A logistic regression of "corrupted" on the weighted sum, the held-out rows weighing half and each kind
    of corruption an equal share of the other half; the weights are the ``weight_grid`` vector whose best
    fit (over the sum's scale and an offset) has the least log-loss plus ``PENALTY`` times its squared
    distance from equal weights. So weights move away from 1 only as far as the corruptions show it
    separates them better: where every weighting separates them alike (all signals see every corruption),
    they stay equal. Deterministic: the same inputs give the same weights. Returns the weights and what
    they were learned from (for reports).
    """
    kinds = [k for k, v in abnormal.items() if len(next(iter(v.values()), ()))]
    held_out = len(next(iter(normal.values()), ()))
    if not kinds or not held_out:
        return (1.0,) * len(signals), {"learned": False, "held_out": held_out}
    parts = [np.vstack([normal[s] for s in signals]).T]
    parts += [np.vstack([abnormal[k][s] for s in signals]).T for k in kinds]
    x = np.minimum(np.vstack(parts), CLIP)
    y = np.r_[np.zeros(held_out), np.ones(len(x) - held_out)]
    shares = [np.full(held_out, 0.5 / held_out)] + [np.full(len(p), 0.5 / len(kinds) / len(p)) for p in parts[1:]]
    sample = np.concatenate(shares)
    equal = np.ones(len(signals))
    start = np.array([0.1, 0.0])
    best, best_penalised, best_loss, equal_loss = equal, np.inf, np.inf, np.inf
    for w in weight_grid(len(signals)):
        loss, start = _logistic_loss(x @ w, y, sample, start)
        if np.array_equal(w, equal):
            equal_loss = loss
        penalised = loss + PENALTY * float(np.sum((w - equal) ** 2))
        if penalised < best_penalised - 1e-12:
            best, best_penalised, best_loss = w, penalised, loss
    return tuple(float(w) for w in best), {
        "learned": True, "held_out": held_out, "corruptions": {k: len(p) for k, p in zip(kinds, parts[1:])},
        "log_loss_equal": round(equal_loss, 6), "log_loss": round(best_loss, 6)}
