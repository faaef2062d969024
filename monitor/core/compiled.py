"""How this package compiles its loops with numba: without the GIL, the machine code kept in numba's cache.

Used by the loops that prepare never-seen strings (``monitor.core.prepare_kernel``) and by those that compute a
dense model's error from feature indices (``monitor.core.dense_kernel``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

FLOAT_LOOPS = {"fastmath": {"reassoc", "contract", "nsz", "arcp"}, "error_model": "numpy"}
"""Options for loops of float arithmetic: sums may be reordered (so the processor's vector lanes take them)
and a division by zero gives inf as numpy's does instead of a Python exception (whose check per division
keeps a loop from being vectorized). Not numba's whole ``fastmath``: infinities and NaN keep their meaning."""


def compiled(function: F | None = None, **options: Any) -> Any:
    """``function`` compiled without the GIL, its machine code kept in numba's cache (next to its module, in
    ``NUMBA_CACHE_DIR`` or the user's cache directory); where none of them can be written, compiled anew at
    each start (a few seconds) rather than failing. ``options`` go to ``numba.njit`` (e.g. ``FLOAT_LOOPS``);
    used bare (``@compiled``) or called (``@compiled(**FLOAT_LOOPS)``)."""
    if function is None:
        return lambda f: compiled(f, **options)
    try:
        return njit(cache=True, nogil=True, **options)(function)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        log.warning("compiled code is not cached (%s); set NUMBA_CACHE_DIR to a writable directory", exc)
        return njit(nogil=True, **options)(function)
