"""``python -m monitor state``: look at the group's changelog key by key and repair one (``state.store: kafka``).

``show`` lists every key with where its latest value is (partition, offset), its size and whether it reads
as a JSON object; ``show --key K`` lists every value of ``K`` still in the topic, newest first, and prints the
newest readable one. ``drop-key K`` writes a tombstone for ``K``: a partition whose state was unreadable is
then started afresh from the group's committed offset by its owner (at its next try, within 30 s).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from monitor.errors import InputError
from monitor.stream.clients import Clients

Print = Callable[[str], None]


def show(clients: Clients, topic: str, key: str | None = None, out: Print = print) -> int:
    """Print the changelog's keys (or one key's values); returns how many values are unreadable."""
    reader = clients.changelog(topic)
    try:
        if key is None:
            state, read = reader.read()
            out(f"{topic}: {len(state)} keys from {read} records")
            bad = 0
            for name in sorted(state):
                partition, offset = reader.locations[name]
                problem = unreadable(state[name])
                bad += problem is not None
                out(f"{name}\t{topic}[{partition}] offset {offset}\t{len(state[name])} bytes\t{problem or 'ok'}")
            return bad
        versions = reader.versions(key)
    finally:
        reader.close()
    if not versions:
        raise InputError(f"no key {key!r} in {topic} (`python -m monitor state show` lists them)")
    shown: bytes | None = None
    bad = 0
    for (partition, offset), value in versions:
        problem = "tombstone (removed)" if value is None else unreadable(value)
        bad += value is not None and problem is not None
        out(f"{topic}[{partition}] offset {offset}\t{0 if value is None else len(value)} bytes\t{problem or 'ok'}")
        if value is None and shown is None:
            break  # older values were removed with it
        if shown is None and value is not None and problem is None:
            shown = value
    if shown is not None:
        out(json.dumps(json.loads(shown), indent=1, sort_keys=True))
    return bad


def drop_key(clients: Clients, topic: str, key: str, out: Print = print) -> None:
    """Write a tombstone for ``key`` (which must have a value now)."""
    reader = clients.changelog(topic)
    try:
        state, _ = reader.read()
    finally:
        reader.close()
    if key not in state:
        raise InputError(f"no key {key!r} with a value in {topic} (`python -m monitor state show` lists them)")
    clients.publish(topic, key, None)
    out(f"{key} removed from {topic}. A partition key: its owner starts the partition afresh from the group's "
        "committed offset (its open hours lack what was read before). A judge key: the topic is judged afresh, "
        "without history. The owner reads the changelog again within 30 s.")


def unreadable(value: bytes) -> str | None:
    """Why ``value`` is not a JSON object (``None``: it is one)."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        return f"unreadable: {exc}"
    return None if isinstance(data, dict) else f"unreadable: a JSON {type(data).__name__}, not an object"
