"""Every exception the project raises on purpose, each with the exit code the CLI gives it.

    MonitorError                  base class; exit code 1
    ├── InputError                a user's input cannot be used (file, column, empty corpus); exit 2
    ├── BundleError               a model bundle is missing, incomplete, corrupt or of another version; exit 3
    ├── ConfigError               a setting has the wrong type, range or name; exit 2
    ├── StateError                the state file is empty, unreadable, corrupt or of another version; exit 4
    ├── BrokerUnavailable         the Kafka cluster did not answer in time; retried by the service, never fatal
    ├── CommittedOffsetsPending   a transaction still holds a group's committed offsets; waited for, never fatal
    ├── ShutdownTimeout           the stop deadline passed while the broker was unreachable; ends the loop
    └── LocalServiceError         a development server (local Kafka, Prometheus) could not be had; exit 1

Bad records inside a stream or a scoring file are not errors: they become rows or counts with a reason.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class of the project's errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(MonitorError):
    """An input file, column or corpus cannot be used as given."""

    exit_code = 2


class ConfigError(MonitorError):
    """A setting is unknown, of the wrong type or out of range."""

    exit_code = 2


class BundleError(MonitorError):
    """A model bundle cannot be loaded or saved: the message names the file and the problem."""

    exit_code = 3


class BundleIncomplete(BundleError):
    """A bundle's files are missing or do not match its manifest: damaged, or still being copied in."""


class StateError(MonitorError):
    """The state file cannot be used; it is left as it is for a person to inspect."""

    exit_code = 4


class IncompatibleState(StateError):
    """Saved state that is whole but was written with settings the configuration no longer has (another
    window length): not damage, so no older value of it would do either."""


class BrokerUnavailable(MonitorError):
    """The cluster could not be reached or did not answer in time; worth retrying."""


class CommittedOffsetsPending(MonitorError):
    """A transaction that commits offsets of these partitions was still open when the wait for them ended
    (KIP-447), or the group's coordinator did not answer: worth waiting for again."""


class ShutdownTimeout(MonitorError):
    """The stop deadline passed while the broker was still unreachable: what was not committed is read again."""


class LocalServiceError(MonitorError):
    """A local service (Kafka, Prometheus) could not be obtained, started or reached."""
