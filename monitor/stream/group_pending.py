"""A member's wait for the committed offsets of the partitions it takes over (``monitor.stream.group``): a
former owner's open transaction holds them until it ends (KIP-447). The wait runs in turns of the loop; how
long it has lasted while the cluster answers is exported, and once only a hanging transaction can explain it,
said as an error with the cure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from monitor.stream.hooks import Hooks

log = logging.getLogger(__name__)

# How long one wait holds the loop: between waits the loop goes on polling, so the member stays in the group,
# hears a stop and a new assignment, and its metrics stay fresh.
PENDING_WAIT_S = 10.0
# Past the transaction timeout and this margin (the broker aborts a timed-out transaction within about ten
# seconds), what still holds the offsets is a hanging transaction, which no timeout ends.
HANGING_AFTER_S = 60.0
HANGING_REPEAT_S = 300.0


class OffsetsWait:
    """How long the current take-over has waited; ``clock`` is the service's wall clock (seconds)."""

    def __init__(self, transaction_timeout_s: float, hooks: Sequence[Hooks], clock: Callable[[], float]) -> None:
        self.transaction_timeout_s = transaction_timeout_s
        self.hooks = hooks
        self.clock = clock
        self.since: float | None = None
        self._said_at = float("-inf")

    def still(self, partitions: str, detail: str, cluster_answers: bool) -> None:
        """Another wait for ``partitions`` (as the log names them) ended with the offsets still held."""
        now = self.clock()
        if self.since is None:
            log.info("waiting for the committed offsets of %s: a transaction of their former owner still holds "
                     "them, or the group's coordinator is not answering (%s)", partitions, detail)
        if self.since is None or not cluster_answers:
            self.since = now  # an outage is said as such by the loop, and is no hanging transaction
        waited = now - self.since
        for hook in self.hooks:
            hook.on_offsets_pending(waited)
        if waited < self.transaction_timeout_s + HANGING_AFTER_S or now - self._said_at < HANGING_REPEAT_S:
            return
        self._said_at = now
        log.error("the committed offsets of %s have been held for %.0f s, past the transaction timeout (%.0f s), "
                  "though the cluster answers: a hanging transaction, which no timeout ends (Kafka can leave one "
                  "when a broker stops while it writes a transaction's markers to partitions without another "
                  "replica). This member waits. Find it with `kafka-transactions.sh --bootstrap-server HOST:PORT "
                  "find-hanging --broker-id N --max-transaction-timeout 1` on each broker, and end each one listed "
                  "with `kafka-transactions.sh abort --topic T --partition P --start-offset O`: the group then "
                  "resumes from its last commit", partitions, waited, self.transaction_timeout_s)

    def done(self) -> None:
        """The offsets were read: the next wait starts afresh."""
        if self.since is not None:
            self.since, self._said_at = None, float("-inf")
            for hook in self.hooks:
                hook.on_offsets_pending(0.0)
