"""The ``formats`` command: the formats a model learned from its training data, most common first, with
their shares and examples, as a table or as JSON.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from monitor.core.bundle import load
from monitor.errors import InputError


def run_formats(model_dir: Path, top: int, as_json: bool) -> int:
    """``python -m monitor formats``: what each signal weighs in the fused score, then the ``top`` formats and
    the rest counted together on standard output, or with ``as_json`` the whole table and the weights as one
    JSON object."""
    bundle = load(model_dir)
    if bundle.fusion is None:
        raise InputError(f"the bundle at {model_dir} was made before formats were learned (format version 1): "
                         "retrain it to list its formats")
    table = bundle.fusion.formats
    if as_json:
        print(json.dumps({**table.to_dict(), "weights": bundle.fusion.weight_of()}))
        return 0
    print(f"{len(table.counts) + table.tail_formats:,} formats in {table.total:,} training sequences "
          f"(bundle {bundle.version})")
    print(f"signals of the fused score (weight, share): {bundle.fusion.weights_note()}")
    print(f"{'share':>8}  {'records':>9}  {'format':<28} examples")
    for name, count in itertools.islice(table.counts.items(), max(top, 0)):
        examples = ", ".join(table.examples.get(name, []))
        print(f"{count / table.total:>8.3%}  {count:>9,}  {name:<28} {examples}")
    listed = min(max(top, 0), len(table.counts))
    rest = sum(itertools.islice(table.counts.values(), listed, None)) + table.tail_records
    if rest:
        print(f"{rest / table.total:>8.3%}  {rest:>9,}  ({len(table.counts) - listed + table.tail_formats:,} "
              "more formats)")
    return 0
