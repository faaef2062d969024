"""The ``state`` command: the group's changelog (``state.store: kafka``) key by key, and the repair of one
key; the work itself is ``monitor.stream.changelog_admin``'s.
"""

from __future__ import annotations

from pathlib import Path

from monitor.errors import InputError
from monitor.settings import load_config
from monitor.stream.changelog_admin import drop_key, show
from monitor.stream.clients import clients_for

UNREADABLE_EXIT = 5


def run_state(config_path: Path | None, action: str, key: str | None, shown_key: str | None = None) -> int:
    """``python -m monitor state``: ``show`` lists the keys, or with a key (``shown_key``, else ``key``) its
    values, and exits 5 when it found an unreadable value; ``drop-key`` removes ``key``."""
    config = load_config(config_path)
    if config.state.store != "kafka":
        raise InputError("state works on a group's changelog: give --config with state.store: kafka (the SQLite "
                         "store keeps its state in state.path; an unusable file is refused whole, exit 4)")
    if action == "drop-key":
        if not key:
            raise InputError("drop-key needs the key to remove (`state show` lists them)")
        drop_key(clients_for(config.kafka), config.changelog_topic, key)
        return 0
    return UNREADABLE_EXIT if show(clients_for(config.kafka), config.changelog_topic, shown_key or key) else 0
