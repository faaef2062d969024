"""The ``logs`` corpus: log-message contents from 30 templates (30 % down to 0.05 %) with typed fields.

Fields: counts, durations, IPv4 addresses, paths, user names, hex request ids, HTTP methods and status codes,
host names, each a ``Field`` that fills it and the pattern it allows. ``UNSEEN_TEMPLATES`` are built from
the same fields and words but never printed (``monitor.devtools.corpora``'s ``unseen_template``).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.devtools.corpus_families import Family, Generator, alternatives, picker
from monitor.devtools.corpus_mixed import IPV4, ipv4


@dataclass(frozen=True)
class Field:
    """A typed slot of a template: how to fill it (given the values already in the message), what it allows."""

    make: Callable[[random.Random, dict[str, str]], str]
    pattern: str  # no capturing groups


_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
          "oscar", "peggy", "trent", "victor", "walter")
_METHODS = {"GET": 60, "POST": 20, "PUT": 10, "DELETE": 5, "PATCH": 5}
# The status a request gets depends on its method, as in a real API.
_STATUSES = {"GET": ("200", "200", "200", "200", "304", "404", "401", "403", "301", "500", "503"),
             "POST": ("201", "201", "201", "400", "409", "500"), "PUT": ("200", "204", "400", "404"),
             "PATCH": ("200", "204", "400", "404"), "DELETE": ("204", "204", "404", "403")}
_RESOURCES = ("users", "orders", "items", "carts", "sessions", "invoices")
_V2_RESOURCES = ("orders", "items")  # only these have a v2 endpoint
_ASSETS = ("app", "main", "vendor", "style")
_TABLES = ("users", "orders", "payments", "audit_log", "inventory")
_QUEUES = ("emails", "billing", "exports", "thumbnails")
_ROLES = ("web", "db", "cache", "worker")
_APPS = ("nginx", "postgres", "redis", "monitor")
_LOG_KINDS = ("access", "error", "app")
_DOMAINS = ("example.org", "api.example.com", "shop.example.net")
_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


def _api_path(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.1:
        return f"/static/{rng.choice(_ASSETS)}.{rng.choice(('js', 'css'))}"
    resource = rng.choice(_RESOURCES)
    api = "v2" if resource in _V2_RESOURCES and rng.random() < 0.3 else "v1"
    return f"/api/{api}/{resource}" + (f"/{rng.randint(1, 99_999)}" if r < 0.7 else "")


_ID = "[1-9][0-9]{0,4}"
_PATH = (rf"/static/{alternatives(_ASSETS)}\.(?:js|css)"
         rf"|/api/v1/{alternatives(_RESOURCES)}(?:/{_ID})?|/api/v2/{alternatives(_V2_RESOURCES)}(?:/{_ID})?")


def _file_path(rng: random.Random) -> str:
    app, r = rng.choice(_APPS), rng.random()
    if r < 0.6:
        return f"/var/log/{app}/{rng.choice(_LOG_KINDS)}.log"
    if r < 0.85:
        return f"/etc/{app}/{app}.conf"
    return f"/srv/backups/{rng.choice(_TABLES)}.sql.gz"


_FILE = ("|".join(rf"/etc/{a}/{a}\.conf" for a in _APPS)
         + rf"|/var/log/{alternatives(_APPS)}/{alternatives(_LOG_KINDS)}\.log"
         + rf"|/srv/backups/{alternatives(_TABLES)}\.sql\.gz")


def _duration(rng: random.Random) -> str:
    return f"{min(99_999, int(rng.lognormvariate(3, 1.2)) + 1)}ms"


def _count(rng: random.Random) -> str:
    return str(min(9_999_999, int(rng.lognormvariate(5, 2))))


def _ignoring_context(make: Generator) -> Callable[[random.Random, dict[str, str]], str]:
    return lambda rng, _values: make(rng)


def _one_of(words: Sequence[str], weights: Sequence[float] | None = None) -> Field:
    return Field(_ignoring_context(lambda rng: rng.choices(words, weights)[0]), alternatives(words))


FIELDS: dict[str, Field] = {
    "method": _one_of(list(_METHODS), list(_METHODS.values())),
    "status": Field(lambda rng, values: rng.choice(_STATUSES[values.get("method", "GET")]),
                    alternatives(sorted({s for ss in _STATUSES.values() for s in ss}))),
    "path": Field(_ignoring_context(_api_path), _PATH),
    "ms": Field(_ignoring_context(_duration), "[1-9][0-9]{0,4}ms"),
    "ip": Field(_ignoring_context(lambda rng: ipv4(rng) if rng.random() < 0.7 else f"10.0.{rng.randint(0, 3)}."
                                  f"{rng.randint(1, 254)}"), IPV4),
    "port": Field(_ignoring_context(lambda rng: str(rng.randint(1024, 65_535))), "[1-9][0-9]{3,4}"),
    "user": _one_of(_USERS),
    "hex": Field(_ignoring_context(lambda rng: f"{rng.getrandbits(32):08x}"), "[0-9a-f]{8}"),
    "int": Field(_ignoring_context(_count), "0|[1-9][0-9]{0,6}"),
    "attempt": Field(_ignoring_context(lambda rng: str(rng.randint(1, 5))), "[1-5]"),
    "days": Field(_ignoring_context(lambda rng: str(rng.randint(1, 30))), "[1-9]|[12][0-9]|30"),
    "pct": Field(_ignoring_context(lambda rng: f"{rng.randint(40, 99)}%"), "[4-9][0-9]%"),
    "key": Field(_ignoring_context(lambda rng: f"{rng.choice(_RESOURCES)}:{rng.randint(1, 99_999)}"),
                 f"{alternatives(_RESOURCES)}:{_ID}"),
    "table": _one_of(_TABLES),
    "queue": _one_of(_QUEUES),
    "host": Field(_ignoring_context(lambda rng: f"{rng.choice(_ROLES)}-{rng.randint(1, 24):02d}"),
                  f"{alternatives(_ROLES)}-(?:0[1-9]|1[0-9]|2[0-4])"),
    "file": Field(_ignoring_context(_file_path), _FILE),
    "domain": _one_of(_DOMAINS),
    "signal": _one_of(_SIGNALS),
}

# Template -> weight in percent: from every request line down to a shutdown now and then.
_TEMPLATE_WEIGHTS = {
    "{method} {path} {status} {ms}": 30,
    "Connection from {ip} closed after {ms}": 15,
    "Accepted connection from {ip}:{port}": 10,
    "User {user} logged in from {ip}": 8,
    "Request {hex} completed in {ms}": 6,
    "Cache hit for key {key}": 5,
    "Cache miss for key {key}": 4,
    "User {user} logged out": 3,
    "Query on table {table} took {ms}": 3,
    "Sent {int} bytes to {ip}": 2.5,
    "Worker {host} started job {int}": 2,
    "Worker {host} finished job {int} in {ms}": 2,
    "Retrying request {hex} (attempt {attempt} of 5)": 1.5,
    "Opened file {file}": 1.2,
    "Closed file {file} after {int} writes": 1,
    "Session {hex} expired for user {user}": 0.8,
    "Health check of {host} returned {status}": 0.7,
    "Scheduled backup of {table} to {file}": 0.5,
    "Rotated log {file}": 0.4,
    "Disk usage on {host} at {pct}": 0.35,
    "Failed login for user {user} from {ip}": 0.3,
    "Reloaded configuration from {file}": 0.25,
    "Slow query on table {table} took {ms}": 0.2,
    "Connection pool for {host} exhausted after {int} requests": 0.15,
    "Certificate for {domain} expires in {days} days": 0.12,
    "User {user} changed password": 0.1,
    "Upstream {host} timed out after {ms}": 0.08,
    "Queue {queue} has {int} pending messages": 0.06,
    "Evicted {int} entries from cache {queue}": 0.05,
    "Shutting down worker {host} on signal {signal}": 0.05,
}
# Templates the log corpus never prints, built from the same fields and words: ``unseen_template``.
UNSEEN_TEMPLATES = (
    "Connection to {ip} refused after {ms}",
    "User {user} deleted file {file}",
    "Request {hex} rejected with status {status}",
    "Cache flush for key {key} took {ms}",
    "Worker {host} crashed on job {int}",
    "Table {table} locked by user {user}",
    "Received {int} bytes from {ip}:{port}",
    "Renewed certificate for {domain} valid for {days} days",
    "{method} {path} redirected to {path}",
    "Queue {queue} drained in {ms}",
)


@dataclass(frozen=True)
class Template:
    """A log template: literal text with ``{field}`` slots; ``fields`` in order of appearance."""

    text: str
    literals: tuple[str, ...]  # the text before each field, then the text after the last one
    fields: tuple[str, ...]
    pattern: re.Pattern[str]  # one group per field

    @classmethod
    def parse(cls, text: str) -> Template:
        literals, fields = [], []
        for literal, name, _spec, _conversion in string.Formatter().parse(text):
            literals.append(literal)
            if name is not None:
                fields.append(name)
        if len(literals) == len(fields):
            literals.append("")
        regex = "".join(re.escape(lit) + f"({FIELDS[f].pattern})" for lit, f in zip(literals, fields))
        return cls(text, tuple(literals), tuple(fields), re.compile(regex + re.escape(literals[-1])))

    def values(self, rng: random.Random) -> list[str]:
        filled: dict[str, str] = {}
        out = []
        for name in self.fields:
            out.append(FIELDS[name].make(rng, filled))
            filled.setdefault(name, out[-1])
        return out

    def render(self, values: Sequence[str]) -> str:
        return "".join(lit + v for lit, v in zip(self.literals, [*values, ""]))

    def make(self, rng: random.Random) -> str:
        return self.render(self.values(rng))

    def valid(self, text: str) -> bool:
        return self.pattern.fullmatch(text) is not None


# The templates the corpus prints, and those it never prints, parsed.
TEMPLATES = tuple(Template.parse(t) for t in _TEMPLATE_WEIGHTS)
UNSEEN = tuple(Template.parse(t) for t in UNSEEN_TEMPLATES)
LOG_FAMILIES: tuple[Family, ...] = tuple(Family(t.text, t.make, _TEMPLATE_WEIGHTS[t.text], t.valid)
                                         for t in TEMPLATES)
_draw_log = picker(LOG_FAMILIES)


def log_message(rng: random.Random) -> str:
    """One log-message content, e.g. ``GET /api/v1/users/8812 200 15ms``."""
    return _draw_log(rng)
