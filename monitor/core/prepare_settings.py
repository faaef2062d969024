"""How sequences are prepared: the settings a ``monitor.core.prepare.Preparer`` is fitted with, checked when
they are made (a bad value raises ``ConfigError``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.errors import ConfigError

TOKENIZE_MODES = ("auto", "separators", "chars")
ENCODINGS = ("positional", "bag")


@dataclass(frozen=True)
class PrepareSettings:
    """How sequences are prepared; every field has a default that suits a first run.

    ``tokenize``: ``auto`` picks ``chars`` when most training sequences have no separator, else
    ``separators``. ``separator_pattern``: a regular expression for separator runs. ``lowercase``: off by
    default, because case is part of a format. ``vocabulary_size``: the most frequent tokens kept (the seed's
    750). ``length``: tokens kept per sequence; ``None`` takes the ``length_quantile`` of training lengths.
    ``values_per_position`` / ``shapes_per_position`` / ``separators_per_position``: the most frequent values
    each position's dictionary keeps in the positional encoding; ``min_count``: rarer values are unknown.
    ``max_chars``: longer strings are cut before tokenizing (their full length still reaches the summary).
    """

    tokenize: str = "auto"
    separator_pattern: str = r"[^0-9A-Za-z]+"
    lowercase: bool = False
    vocabulary_size: int = 750
    length: int | None = None
    length_quantile: float = 0.99
    max_length: int = 48
    encoding: str = "positional"
    values_per_position: int = 40
    shapes_per_position: int = 12
    separators_per_position: int = 6
    min_count: int = 3
    max_chars: int = 4096

    def __post_init__(self) -> None:
        _require(self.tokenize in TOKENIZE_MODES, f"tokenize must be one of {TOKENIZE_MODES}, got {self.tokenize!r}")
        _require(self.encoding in ENCODINGS, f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        _require(self.vocabulary_size >= 3, f"vocabulary_size must be at least 3, got {self.vocabulary_size}")
        _require(self.length is None or self.length >= 1, f"length must be at least 1, got {self.length}")
        _require(0 < self.length_quantile <= 1, f"length_quantile must be in (0, 1], got {self.length_quantile}")
        _require(self.min_count >= 1, f"min_count must be at least 1, got {self.min_count}")
        try:
            re.compile(self.separator_pattern)
        except re.error as exc:
            raise ConfigError(f"separator_pattern {self.separator_pattern!r} is not a valid expression: {exc}") from exc


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
