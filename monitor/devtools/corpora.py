"""Seeded corpora that look like real streams: many formats of very different frequency in one column.

``generate`` gives one identifier format per stream; real columns mix several kinds of identifier, and the
contents of log messages come from templates, some printed constantly and some once a day. Two corpora:

``mixed``
    One column of 13 identifier families whose weights span three orders of magnitude (serials 40 %, down
    to ticket ids 0.05 %): ``generate``'s serials, user ids, plates and residue triplets, plus ISO dates,
    times, private IPv4 addresses, e-mail addresses, order numbers, hex ids, phone numbers, version tags
    and ticket ids. Every family is a small grammar with fixed vocabularies and dependent fields.
``logs``
    Log-message contents from 30 templates (30 % down to 0.05 %) with typed fields: counts, durations,
    IPv4 addresses, paths, user names, hex request ids, HTTP methods and status codes, host names.

Anomaly kinds (``ANOMALY_KINDS``), each a ``Task``: where its normal test rows and its anomalies come from.

``mixed``: ``rare_valid_vs_unseen``, ``char_edit_same_shape``, ``foreign_format``.
``logs``: ``rare_valid_vs_unseen``, ``unseen_template``, ``field_type_change``, ``char_edit_same_shape``.

A *signature* here is a sequence's shape with case kept (``A`` upper, ``a`` lower, ``9`` digit, other
characters kept). Nothing is downloaded; the same seed gives the same strings.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import functools
import random
import re
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.devtools import generate

Generator = Callable[[random.Random], str]
Corruption = Callable[[str, random.Random], "str | None"]
Candidate = Callable[[random.Random], "str | None"]

RARE_WEIGHT = 1.0  # families (templates) below this share, in percent, are the rare-but-valid ones
_SIGNATURE_TABLE = str.maketrans({**{c: "A" for c in string.ascii_uppercase},
                                  **{c: "a" for c in string.ascii_lowercase},
                                  **{c: "9" for c in string.digits}})


def signature(text: str) -> str:
    """Upper-case letters to ``A``, lower-case to ``a``, digits to ``9``, other characters kept."""
    return text.translate(_SIGNATURE_TABLE)


@dataclass(frozen=True)
class Family:
    """One kind of string in a corpus: how to make one, how often, and which strings it allows."""

    name: str
    make: Generator
    weight: float  # percent of the corpus
    valid: Callable[[str], bool]


def _matcher(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda text: compiled.fullmatch(text) is not None


def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choices(string.digits, k=k))


# -- the mixed column ----------------------------------------------------------------------------------------

_YEARS = range(2019, 2026)
_ORDER_KINDS = {"ORD": 2019, "INV": 2019, "RET": 2021}  # kind -> first year it exists
_FIRST_NAMES = ("anna", "ben", "chris", "dana", "eva", "felix", "hana", "jan", "julia", "karl", "lena",
                "max", "nina", "otto", "paul", "sara", "tim", "uwe")
_SURNAMES = ("smith", "jones", "mueller", "schmidt", "martin", "bernard", "dubois", "garcia", "rossi",
             "novak", "kowalski", "jensen", "berg", "weber", "fischer", "meyer", "wagner", "becker")
_MAIL_DOMAINS = ("example.org", "example.com", "mail.example.net")
_CORP_DOMAIN = "corp.example.de"  # only full names there
# Country code -> (area codes, subscriber digits): the area and the number's length depend on the country.
_PHONES = {"49": (("30", "40", "89", "69", "221"), 7), "33": (("1", "4", "6"), 8),
           "44": (("20", "161", "131"), 7), "1": (("212", "415", "617"), 7)}
_PROJECTS = ("OPS", "WEB", "DATA", "INFRA")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_HOST_OCTET = r"(?:25[0-4]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[1-9])"


def iso_date(rng: random.Random) -> str:
    """Dates like ``2024-03-17``; the day always exists in its month (leap years included)."""
    year, month = rng.choice(_YEARS), rng.randint(1, 12)
    return f"{year}-{month:02d}-{rng.randint(1, calendar.monthrange(year, month)[1]):02d}"


def _valid_date(text: str) -> bool:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return False
    try:
        return datetime.date.fromisoformat(text).year in _YEARS
    except ValueError:
        return False


def clock_time(rng: random.Random) -> str:
    """Times like ``14:03:27``, mostly in office hours."""
    hour = rng.randint(8, 18) if rng.random() < 0.8 else rng.randint(0, 23)
    return f"{hour:02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def ipv4(rng: random.Random) -> str:
    """Private IPv4 addresses: ``10.x.x.x`` mostly, then ``192.168.x.x`` and ``172.16-31.x.x``."""
    octet, host = rng.randint(0, 255), rng.randint(1, 254)
    r = rng.random()
    if r < 0.6:
        return f"10.{rng.randint(0, 255)}.{octet}.{host}"
    if r < 0.9:
        return f"192.168.{octet}.{host}"
    return f"172.{rng.randint(16, 31)}.{octet}.{host}"


_IPV4 = rf"(?:10\.{_OCTET}|192\.168|172\.(?:1[6-9]|2[0-9]|3[01]))\.{_OCTET}\.{_HOST_OCTET}"


def email(rng: random.Random) -> str:
    """Addresses like ``j.smith@example.org`` from small name lists; the corporate domain takes full names."""
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_SURNAMES)
    r = rng.random()
    if r < 0.05:
        return f"{first}.{last}@{_CORP_DOMAIN}"
    domain = rng.choices(_MAIL_DOMAINS, (60, 30, 10))[0]
    if r < 0.6:
        return f"{first[0]}.{last}@{domain}"
    if r < 0.9:
        return f"{first}.{last}@{domain}"
    return f"{first}{rng.randint(10, 99)}@{domain}"


def _alternatives(words: Sequence[str]) -> str:
    return "(?:" + "|".join(map(re.escape, words)) + ")"


_FIRST, _LAST = _alternatives(_FIRST_NAMES), _alternatives(_SURNAMES)
_INITIALS = "[" + "".join(sorted({n[0] for n in _FIRST_NAMES})) + "]"
_EMAIL = (rf"(?:{_INITIALS}\.{_LAST}|{_FIRST}\.{_LAST}|{_FIRST}[1-9][0-9])@{_alternatives(_MAIL_DOMAINS)}"
          rf"|{_FIRST}\.{_LAST}@{re.escape(_CORP_DOMAIN)}")


def order_number(rng: random.Random) -> str:
    """Order numbers like ``ORD-2024-000123``: returns (``RET``) only since 2021, counters below 50,000."""
    kind = rng.choices(list(_ORDER_KINDS), (80, 5, 15))[0]
    year = rng.randint(_ORDER_KINDS[kind], _YEARS[-1])
    return f"{kind}-{year}-{rng.randint(1, 49_999):06d}"


_ORDER = "|".join(rf"{kind}-(?:{'|'.join(str(y) for y in range(first, _YEARS[-1] + 1))})-0[0-4][0-9]{{4}}"
                  for kind, first in _ORDER_KINDS.items())


def hex_id(rng: random.Random) -> str:
    """Lower-case hex ids of 16 digits."""
    return f"{rng.getrandbits(64):016x}"


def phone(rng: random.Random) -> str:
    """Phone numbers like ``+49 30 1234567``: the area codes and the length depend on the country."""
    country = rng.choices(list(_PHONES), (50, 20, 20, 10))[0]
    areas, length = _PHONES[country]
    return f"+{country} {rng.choice(areas)} {rng.randint(1, 9)}{_digits(rng, length - 1)}"


_PHONE = "|".join(rf"\+{c} {_alternatives(areas)} [1-9][0-9]{{{n - 1}}}" for c, (areas, n) in _PHONES.items())


def version(rng: random.Random) -> str:
    """Version tags like ``v1.12.3``, sometimes a release candidate ``v2.0.1-rc2``."""
    tag = f"v{rng.choices('0123', (20, 50, 25, 5))[0]}.{rng.randint(0, 19)}.{rng.randint(0, 12)}"
    return tag + (f"-rc{rng.randint(1, 3)}" if rng.random() < 0.1 else "")


def ticket(rng: random.Random) -> str:
    """Ticket ids like ``OPS-1234``."""
    return f"{rng.choice(_PROJECTS)}-{rng.randint(1, 4999)}"


MIXED_FAMILIES: tuple[Family, ...] = (
    Family("serial", generate.serial, 40, functools.partial(generate.is_valid, "serial")),
    Family("uid", generate.uid, 20, functools.partial(generate.is_valid, "uid")),
    Family("date", iso_date, 12, _valid_date),
    Family("order", order_number, 9, _matcher(_ORDER)),
    Family("ipv4", ipv4, 6, _matcher(_IPV4)),
    Family("email", email, 5, _matcher(_EMAIL)),
    Family("time", clock_time, 3.5, _matcher(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")),
    Family("plate", generate.plate, 2, functools.partial(generate.is_valid, "plate")),
    Family("hex", hex_id, 1.3, _matcher(r"[0-9a-f]{16}")),
    Family("phone", phone, 0.7, _matcher(_PHONE)),
    Family("residues", generate.residues, 0.3, functools.partial(generate.is_valid, "residues")),
    Family("version", version, 0.15, _matcher(r"v[0-3]\.1?[0-9]\.(?:1[0-2]|[0-9])(?:-rc[1-3])?")),
    Family("ticket", ticket, 0.05, _matcher(rf"{_alternatives(_PROJECTS)}-(?:[1-4][0-9]{{3}}|[1-9][0-9]{{0,2}})")),
)


def _picker(families: Sequence[Family]) -> Generator:
    cumulative, total = [], 0.0
    for family in families:
        total += family.weight
        cumulative.append(total)

    def draw(rng: random.Random) -> str:
        return rng.choices(families, cum_weights=cumulative)[0].make(rng)
    return draw


_draw_mixed = _picker(MIXED_FAMILIES)


def mixed(rng: random.Random) -> str:
    """One value of the mixed identifier column."""
    return _draw_mixed(rng)


# -- log messages --------------------------------------------------------------------------------------------

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
_PATH = (rf"/static/{_alternatives(_ASSETS)}\.(?:js|css)"
         rf"|/api/v1/{_alternatives(_RESOURCES)}(?:/{_ID})?|/api/v2/{_alternatives(_V2_RESOURCES)}(?:/{_ID})?")


def _file_path(rng: random.Random) -> str:
    app, r = rng.choice(_APPS), rng.random()
    if r < 0.6:
        return f"/var/log/{app}/{rng.choice(_LOG_KINDS)}.log"
    if r < 0.85:
        return f"/etc/{app}/{app}.conf"
    return f"/srv/backups/{rng.choice(_TABLES)}.sql.gz"


_FILE = ("|".join(rf"/etc/{a}/{a}\.conf" for a in _APPS)
         + rf"|/var/log/{_alternatives(_APPS)}/{_alternatives(_LOG_KINDS)}\.log"
         + rf"|/srv/backups/{_alternatives(_TABLES)}\.sql\.gz")


def _duration(rng: random.Random) -> str:
    return f"{min(99_999, int(rng.lognormvariate(3, 1.2)) + 1)}ms"


def _count(rng: random.Random) -> str:
    return str(min(9_999_999, int(rng.lognormvariate(5, 2))))


def _ignoring_context(make: Generator) -> Callable[[random.Random, dict[str, str]], str]:
    return lambda rng, _values: make(rng)


def _one_of(words: Sequence[str], weights: Sequence[float] | None = None) -> Field:
    return Field(_ignoring_context(lambda rng: rng.choices(words, weights)[0]), _alternatives(words))


FIELDS: dict[str, Field] = {
    "method": _one_of(list(_METHODS), list(_METHODS.values())),
    "status": Field(lambda rng, values: rng.choice(_STATUSES[values.get("method", "GET")]),
                    _alternatives(sorted({s for ss in _STATUSES.values() for s in ss}))),
    "path": Field(_ignoring_context(_api_path), _PATH),
    "ms": Field(_ignoring_context(_duration), "[1-9][0-9]{0,4}ms"),
    "ip": Field(_ignoring_context(lambda rng: ipv4(rng) if rng.random() < 0.7 else f"10.0.{rng.randint(0, 3)}."
                                  f"{rng.randint(1, 254)}"), _IPV4),
    "port": Field(_ignoring_context(lambda rng: str(rng.randint(1024, 65_535))), "[1-9][0-9]{3,4}"),
    "user": _one_of(_USERS),
    "hex": Field(_ignoring_context(lambda rng: f"{rng.getrandbits(32):08x}"), "[0-9a-f]{8}"),
    "int": Field(_ignoring_context(_count), "0|[1-9][0-9]{0,6}"),
    "attempt": Field(_ignoring_context(lambda rng: str(rng.randint(1, 5))), "[1-5]"),
    "days": Field(_ignoring_context(lambda rng: str(rng.randint(1, 30))), "[1-9]|[12][0-9]|30"),
    "pct": Field(_ignoring_context(lambda rng: f"{rng.randint(40, 99)}%"), "[4-9][0-9]%"),
    "key": Field(_ignoring_context(lambda rng: f"{rng.choice(_RESOURCES)}:{rng.randint(1, 99_999)}"),
                 f"{_alternatives(_RESOURCES)}:{_ID}"),
    "table": _one_of(_TABLES),
    "queue": _one_of(_QUEUES),
    "host": Field(_ignoring_context(lambda rng: f"{rng.choice(_ROLES)}-{rng.randint(1, 24):02d}"),
                  f"{_alternatives(_ROLES)}-(?:0[1-9]|1[0-9]|2[0-4])"),
    "file": Field(_ignoring_context(_file_path), _FILE),
    "domain": _one_of(_DOMAINS),
    "signal": _one_of(_SIGNALS),
}
# Fields a value of another type can be put into by ``field_type_change`` (vocabulary-only fields too).
_VALUE_TYPES = ("int", "ms", "ip", "path", "user", "hex", "file", "host", "status", "method", "pct", "table")

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


_TEMPLATES = tuple(Template.parse(t) for t in _TEMPLATE_WEIGHTS)
_UNSEEN = tuple(Template.parse(t) for t in UNSEEN_TEMPLATES)
LOG_FAMILIES: tuple[Family, ...] = tuple(Family(t.text, t.make, _TEMPLATE_WEIGHTS[t.text], t.valid)
                                         for t in _TEMPLATES)
_draw_log = _picker(LOG_FAMILIES)


def log_message(rng: random.Random) -> str:
    """One log-message content, e.g. ``GET /api/v1/users/8812 200 15ms``."""
    return _draw_log(rng)


CORPORA: dict[str, tuple[Family, ...]] = {"mixed": MIXED_FAMILIES, "logs": LOG_FAMILIES}


def family_of(corpus: str, text: str) -> str | None:
    """The family (for ``logs`` the template) ``text`` is a valid member of, or None."""
    return next((f.name for f in CORPORA[corpus] if f.valid(text)), None)


def is_valid(corpus: str, text: str) -> bool:
    """Whether ``text`` could be produced by some family of the corpus (the grammar, not a sample)."""
    return family_of(corpus, text) is not None


@functools.lru_cache(maxsize=None)
def known_signatures(corpus: str) -> frozenset[str]:
    """Signatures of a large sample of every family alike, rare ones included: the shapes the corpus makes."""
    rng = random.Random(f"{corpus}/signatures")
    per_family = 3000 if corpus == "mixed" else 300
    return frozenset(signature(f.make(rng)) for f in CORPORA[corpus] for _ in range(per_family))


# -- anomalies -----------------------------------------------------------------------------------------------

def _same_class_other(ch: str, rng: random.Random) -> str:
    pool = string.digits if ch.isdigit() else string.ascii_uppercase if ch.isupper() else string.ascii_lowercase
    return rng.choice(pool.replace(ch, ""))


def _substituted(text: str, spots: Sequence[int], corpus: str, rng: random.Random, tries: int = 30) -> str | None:
    """``text`` with one character at one of ``spots`` replaced by another of its class, invalid in
    ``corpus``; None when ``tries`` attempts all gave valid strings."""
    if not spots:
        return None
    for _ in range(tries):
        i = rng.choice(spots)
        candidate = text[:i] + _same_class_other(text[i], rng) + text[i + 1:]
        if not is_valid(corpus, candidate):
            return candidate
    return None


def char_edit_same_shape(text: str, rng: random.Random) -> str | None:
    """A mixed-column value with one letter or digit replaced by another of the same class so that no family
    allows it: a residue ``PHX``, a country ``DX``, a month ``13``, an octet ``356``, a hex digit ``q``.
    The signature stays the same; only which values are possible gives it away."""
    return _substituted(text, [i for i, ch in enumerate(text) if ch.isalnum()], "mixed", rng)


_SEPARATOR_SWAPS = {"-": ".", ".": "-", " ": "-", ":": ".", "@": ".", "+": "-"}


def _changed_separator(text: str, rng: random.Random) -> str | None:
    spots = [i for i, ch in enumerate(text) if ch in _SEPARATOR_SWAPS]
    if not spots:
        return None
    i = rng.choice(spots)
    return text[:i] + _SEPARATOR_SWAPS[text[i]] + text[i + 1:]


_RESTRUCTURINGS: tuple[Corruption, ...] = (generate.swapped_tokens, generate.dropped_token, generate.extra_token,
                                            generate.extra_separator, generate.missing_separator, _changed_separator)


def unseen_structure(text: str, rng: random.Random) -> str | None:
    """A mixed-column value rebuilt with a token structure no family produces (tokens swapped, dropped or
    repeated, a separator changed, added or removed): about the same length and characters, an unseen
    signature."""
    candidate = rng.choice(_RESTRUCTURINGS)(text, rng)
    if candidate is None or is_valid("mixed", candidate) or signature(candidate) in known_signatures("mixed"):
        return None
    return candidate


def _card(rng: random.Random) -> str:
    return f"4{_digits(rng, 3)} {_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}"


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _token(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(rng.choice((12, 16)))).decode("ascii")


def _url(rng: random.Random) -> str:
    host = rng.choice(("www.example.org", "shop.example.com", "docs.example.net"))
    return f"https://{host}/{rng.choice(('products', 'orders', 'guides'))}/{rng.randint(1, 9999)}"


FOREIGN_FORMATS: dict[str, Generator] = {"card": _card, "mac": _mac, "uuid": _uuid, "base64": _token,
                                         "url": _url}


def foreign_format(rng: random.Random) -> str:
    """A whole value of a format the mixed column never carries: card-like numbers, MAC addresses, UUIDs,
    base64 tokens, URLs."""
    return rng.choice(list(FOREIGN_FORMATS.values()))(rng)


def _parse_log(text: str) -> tuple[Template, list[tuple[int, int]]] | None:
    """The template ``text`` comes from and the span of each of its fields."""
    for template in _TEMPLATES:
        match = template.pattern.fullmatch(text)
        if match:
            return template, [match.span(i + 1) for i in range(len(template.fields))]
    return None


def misspelled_keyword(text: str, rng: random.Random) -> str | None:
    """A log message with one letter of a template word (at least three letters) or of its HTTP method
    replaced by another letter of the same case: ``Conmection``, ``GXT``. The signature stays the same."""
    parsed = _parse_log(text)
    if parsed is None:
        return None
    template, spans = parsed
    in_field = {i for start, end in spans for i in range(start, end)}
    methods = {i for name, (start, end) in zip(template.fields, spans) if name == "method" for i in range(start, end)}
    words = [i for m in re.finditer("[A-Za-z]{3,}", text) if not in_field & set(range(*m.span()))
             for i in range(*m.span())]
    return _substituted(text, words + sorted(methods), "logs", rng)


def field_type_change(text: str, rng: random.Random, tries: int = 10) -> str | None:
    """A log message with one field holding a value of another type: a path where a count goes, a user
    where an address goes, an address where a status goes."""
    parsed = _parse_log(text)
    if parsed is None or not parsed[1]:
        return None
    template, spans = parsed
    for _ in range(tries):
        k = rng.randrange(len(spans))
        other = rng.choice([t for t in _VALUE_TYPES if t != template.fields[k]])
        start, end = spans[k]
        candidate = text[:start] + FIELDS[other].make(rng, {}) + text[end:]
        if not is_valid("logs", candidate):
            return candidate
    return None


def unseen_template(rng: random.Random) -> str:
    """A message from a template the corpus never prints (same fields and words: ``UNSEEN_TEMPLATES``)."""
    return rng.choice(_UNSEEN).make(rng)


def restructured_message(text: str, rng: random.Random) -> str | None:
    """A log message with its words rearranged as no template has them: two neighbours swapped, one
    dropped or one repeated."""
    words = text.split(" ")
    op = rng.choice(("swap", "drop", "repeat"))
    i = rng.randrange(len(words))
    if op == "swap":
        if i + 1 == len(words) or words[i] == words[i + 1]:
            return None
        words[i], words[i + 1] = words[i + 1], words[i]
    elif op == "drop" and len(words) > 2:
        del words[i]
    else:
        words.insert(i, words[i])
    candidate = " ".join(words)
    if is_valid("logs", candidate) or signature(candidate) in known_signatures("logs"):
        return None
    return candidate


# -- tasks ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """One anomaly kind of a corpus: how its normal test rows and its candidate anomalies are drawn.

    ``anomaly`` may return None or a valid string; ``anomalies`` filters those out."""

    normal: Generator
    anomaly: Candidate
    doc: str


def _rare_heavy(corpus: str, draw: Generator) -> Generator:
    """Half the rows from the corpus as it is, half from its rare families alone (uniformly)."""
    rare = [f for f in CORPORA[corpus] if f.weight < RARE_WEIGHT]

    def draw_rare_heavy(rng: random.Random) -> str:
        return draw(rng) if rng.random() < 0.5 else rng.choice(rare).make(rng)
    return draw_rare_heavy


def _corrupting(source: Generator, corruption: Corruption) -> Candidate:
    return lambda rng: corruption(source(rng), rng)


def _tasks(corpus: str, draw: Generator, corruptions: dict[str, Corruption],
           fresh: dict[str, Generator], restructure: Corruption) -> dict[str, Task]:
    rare_heavy = _rare_heavy(corpus, draw)
    tasks = {"rare_valid_vs_unseen": Task(
        rare_heavy, _corrupting(rare_heavy, restructure),
        "normal rows over-represent the rare families (half drawn from them alone); the anomalies are "
        "values of the same mix with a token structure no family produces (" + restructure.__name__ + ")")}
    tasks.update({kind: Task(draw, _corrupting(draw, fn), fn.__doc__ or "") for kind, fn in corruptions.items()})
    tasks.update({kind: Task(draw, fn, fn.__doc__ or "") for kind, fn in fresh.items()})
    return tasks


TASKS: dict[str, dict[str, Task]] = {
    "mixed": _tasks("mixed", mixed, {"char_edit_same_shape": char_edit_same_shape},
                    {"foreign_format": foreign_format}, unseen_structure),
    "logs": _tasks("logs", log_message, {"field_type_change": field_type_change,
                                         "char_edit_same_shape": misspelled_keyword},
                   {"unseen_template": unseen_template}, restructured_message),
}
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {corpus: tuple(tasks) for corpus, tasks in TASKS.items()}
_GENERATORS: dict[str, Generator] = {"mixed": mixed, "logs": log_message}


def sample(corpus: str, n: int, seed: int = 0) -> list[str]:
    """``n`` normal sequences of ``corpus`` (``mixed`` or ``logs``), as training data."""
    rng = random.Random(seed)
    make = _GENERATORS[corpus]
    return [make(rng) for _ in range(n)]


def normal_test(corpus: str, kind: str, n: int, seed: int = 0) -> list[str]:
    """``n`` normal test rows for one task: like ``sample``, except where the task draws them otherwise
    (``rare_valid_vs_unseen``)."""
    rng = random.Random(seed)
    make = TASKS[corpus][kind].normal
    return [make(rng) for _ in range(n)]


def anomalies(corpus: str, kind: str, n: int, normal: set[str], seed: int = 0) -> list[str]:
    """``n`` abnormal sequences of one kind for ``corpus``; none is valid in the corpus or in ``normal``.

    Returns fewer than ``n`` when candidates are rarely usable (not expected for these kinds).
    """
    rng = random.Random(f"{corpus}/{kind}/{seed}")
    draw = TASKS[corpus][kind].anomaly
    out: list[str] = []
    for _ in range(n * 20):
        if len(out) == n:
            break
        candidate = draw(rng)
        if candidate and candidate not in normal and not is_valid(corpus, candidate):
            out.append(candidate)
    return out
