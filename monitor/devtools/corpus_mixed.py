"""The ``mixed`` corpus: one column of 13 identifier families whose weights span three orders of magnitude.

Serials 40 %, down to ticket ids 0.05 %: ``generate``'s serials, user ids, plates and residue triplets, plus
ISO dates, times, private IPv4 addresses, e-mail addresses, order numbers, hex ids, phone numbers, version
tags and ticket ids. Every family is a small grammar with fixed vocabularies and dependent fields
(``monitor.devtools.corpora`` draws test rows and anomalies from it).
"""

from __future__ import annotations

import calendar
import datetime
import functools
import random
import re

from monitor.devtools import generate
from monitor.devtools.corpus_families import Family, alternatives, digits, matcher, picker

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


IPV4 = rf"(?:10\.{_OCTET}|192\.168|172\.(?:1[6-9]|2[0-9]|3[01]))\.{_OCTET}\.{_HOST_OCTET}"


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


_FIRST, _LAST = alternatives(_FIRST_NAMES), alternatives(_SURNAMES)
_INITIALS = "[" + "".join(sorted({n[0] for n in _FIRST_NAMES})) + "]"
_EMAIL = (rf"(?:{_INITIALS}\.{_LAST}|{_FIRST}\.{_LAST}|{_FIRST}[1-9][0-9])@{alternatives(_MAIL_DOMAINS)}"
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
    return f"+{country} {rng.choice(areas)} {rng.randint(1, 9)}{digits(rng, length - 1)}"


_PHONE = "|".join(rf"\+{c} {alternatives(areas)} [1-9][0-9]{{{n - 1}}}" for c, (areas, n) in _PHONES.items())


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
    Family("order", order_number, 9, matcher(_ORDER)),
    Family("ipv4", ipv4, 6, matcher(IPV4)),
    Family("email", email, 5, matcher(_EMAIL)),
    Family("time", clock_time, 3.5, matcher(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")),
    Family("plate", generate.plate, 2, functools.partial(generate.is_valid, "plate")),
    Family("hex", hex_id, 1.3, matcher(r"[0-9a-f]{16}")),
    Family("phone", phone, 0.7, matcher(_PHONE)),
    Family("residues", generate.residues, 0.3, functools.partial(generate.is_valid, "residues")),
    Family("version", version, 0.15, matcher(r"v[0-3]\.1?[0-9]\.(?:1[0-2]|[0-9])(?:-rc[1-3])?")),
    Family("ticket", ticket, 0.05, matcher(rf"{alternatives(_PROJECTS)}-(?:[1-4][0-9]{{3}}|[1-9][0-9]{{0,2}})")),
)


_draw_mixed = picker(MIXED_FAMILIES)


def mixed(rng: random.Random) -> str:
    """One value of the mixed identifier column."""
    return _draw_mixed(rng)
