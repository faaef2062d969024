"""What librdkafka's statistics say of the cluster, for a confluent-kafka consumer: which brokers are up, each
known topic's partitions with their leader, and where fetching stands. They arrive as JSON every
``STATS_INTERVAL_MS`` through the consumer's ``stats_cb``; reading them asks the cluster nothing.

A partition answers when its leader's node is up. librdkafka writes its broker entries one by one under their
names, and may list one name twice: a broker it is retiring beside the one it connected anew (seen with the
bootstrap entries of a consumer created during an outage). A plain ``json.loads`` keeps the last entry of a
repeated name, so a partition whose leader was up could look unreachable for as long as both were listed, and
its hours waited; every entry is read here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from monitor.records import Position

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 1_000  # how often librdkafka says which brokers are up and which partitions it knows
LEADERS_AWAY_LOG_AFTER_S = 10.0  # partitions without a leader up are logged once it has lasted this long


class JsonObject(dict):  # type: ignore[type-arg]
    """A JSON object read by ``json.loads(..., object_pairs_hook=JsonObject)``: a dict that also keeps every
    pair in order, a repeated key's included (``pairs``)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


_NONE = JsonObject([])


class ClusterStatistics:
    """The last statistics read whole (``read``, the ``stats_cb``): ``answering``, ``partitions_of``,
    ``known_partitions`` and ``fetched_to``. ``assigned`` gives the consumer's partitions, whose leaders being
    away for a while is logged."""

    def __init__(self, assigned: Callable[[], Iterable[Position]]) -> None:
        self._assigned = assigned
        self.brokers_up: set[int] = set()  # node ids
        self.leaders: dict[str, dict[int, int]] = {}  # topic -> partition -> leader's node id (-1: none)
        # Where each partition's fetching stands when nothing fetched waits for the caller.
        self.fetched_to: dict[Position, int] = {}
        # Assigned partitions whose leader is not up, since when, and whether that was logged.
        self._away: frozenset[Position] = frozenset()
        self._away_since = 0.0
        self._said_away = False
        self._unreadable = False

    def read(self, text: str) -> None:
        """Take a new set of statistics, or keep the last ones if these cannot be read (said once)."""
        try:
            stats = json.loads(text, object_pairs_hook=JsonObject)
            brokers_up = {b["nodeid"] for _, b in stats.get("brokers", _NONE).pairs
                          if b.get("state") == "UP" and b.get("nodeid", -1) >= 0}
            topics = stats.get("topics", {})
            leaders = {name: {int(n): p.get("leader", -1) for n, p in topic.get("partitions", {}).items()
                              if int(n) >= 0} for name, topic in topics.items()}
            fetched_to = {(name, int(n)): p["next_offset"] for name, topic in topics.items()
                          for n, p in topic.get("partitions", {}).items()
                          if int(n) >= 0 and p.get("next_offset", -1) >= 0 and p.get("fetchq_cnt", 1) == 0}
        except (ValueError, KeyError, TypeError, AttributeError):
            # What they said before stays in use: say so once, since it may keep a partition unreachable.
            (log.debug if self._unreadable else log.warning)(
                "librdkafka's statistics could not be read; the last ones read stay in use", exc_info=True)
            self._unreadable = True
            return
        self.brokers_up, self.leaders, self.fetched_to = brokers_up, leaders, fetched_to
        self._say_leaders_away(stats)

    def answering(self, partition: Position) -> bool:
        """Whether the partition's leader is up (an outage if not: the end the client knows may be stale)."""
        return self.leaders.get(partition[0], {}).get(partition[1], -1) in self.brokers_up

    def partitions_of(self, topic: str) -> set[int]:
        """The topic's partitions, empty when the statistics do not know the topic (yet)."""
        return set(self.leaders.get(topic, ()))

    def known_partitions(self, topics: Sequence[str]) -> frozenset[Position] | None:
        """Every partition of ``topics``, or ``None`` while one of them is not known yet."""
        known: set[Position] = set()
        for topic in topics:
            numbers = self.leaders.get(topic)
            if not numbers:
                return None
            known.update((topic, n) for n in numbers)
        return frozenset(known)

    def _say_leaders_away(self, stats: JsonObject) -> None:
        """Log which assigned partitions have had no leader up for ``LEADERS_AWAY_LOG_AFTER_S`` (not the
        moments after an assignment), with what the statistics say of them and of every broker entry, and
        when their leaders are up again: why ``progress`` calls them unreachable."""
        away = frozenset(p for p in self._assigned() if not self.answering(p))
        now = time.monotonic()
        if away != self._away:
            self._away, self._away_since = away, now
            if not away and self._said_away:
                log.info("librdkafka's statistics: every assigned partition's leader is up again")
                self._said_away = False
            return
        if not away or self._said_away or now - self._away_since < LEADERS_AWAY_LOG_AFTER_S:
            return
        self._said_away = True
        brokers = ", ".join(f"{name} (node {b.get('nodeid')}): {b.get('state')}"
                            for name, b in stats.get("brokers", _NONE).pairs)
        partitions = ", ".join(
            f"{t}[{n}] leader {self.leaders.get(t, {}).get(n, 'unknown')} "
            f"({stats.get('topics', {}).get(t, {}).get('partitions', {}).get(str(n), {}).get('fetch_state', '?')})"
            for t, n in sorted(away))
        log.info("librdkafka's statistics: no leader up for %.0f s for %s; brokers %s",
                 now - self._away_since, partitions, brokers or "none")
