"""Phone numbers: normalisation to E.164, validation and time zones.

Everything is decided by :mod:`phonenumbers`. Parsing a number with it costs
tens of microseconds, too much for a million-row import, so numbers of the
North American Numbering Plan written in the usual ways (``(415) 555-0100``,
``415.555.0100``, ``+1 415 555 0100``, ``14155550100``) take a fast path:
their ten national digits are taken out directly, and validity and time zones
are looked up in a cache keyed by the leading digits. The key is long enough
to decide both: its length is worked out from phonenumbers' own metadata (the
deepest digit any NANP validity pattern inspects, and the longest time-zone
prefix), so a cached answer is the answer phonenumbers gives for the whole
number. Everything else goes through ``phonenumbers.parse``.

Each number also gets the region whose calling rules apply to it
(:mod:`dialer.leads.regions`): an ISO 3166 code, a subdivision (``US-FL``,
``CA-ON``) when the area code belongs to one, else its country (``US`` for a
toll-free number, ``GB``). A NANP area code's state or province comes from
phonenumbers' own geocoding data ("Florida", "Miami, FL"), through a table
made from it (:mod:`dialer.leads.area_codes`).
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import NamedTuple

import phonenumbers
from phonenumbers import PhoneNumberFormat
from phonenumbers import timezone as pn_timezone

__all__ = [
    "InvalidPhone",
    "InvalidTimezone",
    "Phone",
    "PhoneNormalizer",
    "normalize_timezone",
    "lead_region",
    "region_of_text",
]

# phonenumbers' answer when it knows no zone for a number.
_UNKNOWN_ZONE = "Etc/Unknown"
# Cache entry of a number phonenumbers says is invalid.
_INVALID = "invalid"
# Characters people write between the digits of a NANP number.
_FORMATTING = str.maketrans("", "", " ()-./\u00a0")


class InvalidPhone(ValueError):
    """The text is not a valid phone number; the message says why."""


class InvalidTimezone(ValueError):
    """The text is not an IANA time zone key; the message says why."""


class Phone(NamedTuple):
    e164: str
    # IANA zone keys, sorted and '|'-joined (several when the number spans zones).
    timezone: str | None
    # The number's rules region (ISO 3166: 'US-FL', 'CA-ON', 'US', 'GB'); several
    # '|'-joined when its area code covers several; None when unknown.
    region: str | None = None


@functools.cache
def _available_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=4096)
def normalize_timezone(text: str) -> str:
    """Check an IANA zone key (or several, '|'-joined); return them sorted and deduplicated."""
    parts = sorted({part.strip() for part in text.split("|")})
    if not parts or any(not part for part in parts):
        raise InvalidTimezone(f"empty time zone in {text!r}")
    zones = _available_zones()
    for part in parts:
        if part not in zones:
            raise InvalidTimezone(f"unknown time zone {part!r}")
    return "|".join(parts)


def _zones_of(numobj) -> str | None:
    zones = pn_timezone.time_zones_for_number(numobj)
    known = sorted({z for z in zones if z != _UNKNOWN_ZONE and z in _available_zones()})
    return "|".join(known) if known else None


# --- The region of a number, and of a lead's state/province text ----------------

_US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan",
    "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey",
    "NM": "New Mexico", "NY": "New York", "NC": "North Carolina", "ND": "North Dakota",
    "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania",
    "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee",
    "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington",
    "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}
_CA_PROVINCES = {
    "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
    "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories",
    "NU": "Nunavut", "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec",
    "SK": "Saskatchewan", "YT": "Yukon",
}
_SUBDIVISIONS = {"US": _US_STATES, "CA": _CA_PROVINCES}
# Other spellings found in the geocoding data or in lead files.
_ALIASES = {
    "US": {"washington d.c.": "DC", "washington dc": "DC", "washington state": "WA"},
    "CA": {"british colombia": "BC", "québec": "QC", "newfoundland": "NL", "labrador": "NL",
           "pei": "PE", "yukon territory": "YT"},
}


@functools.cache
def _subdivision_names(country: str) -> dict[str, str]:
    """Lower-case name, code or ISO code -> code, for one country's subdivisions."""
    names: dict[str, str] = {}
    for code, name in _SUBDIVISIONS.get(country, {}).items():
        names[code.lower()] = code
        names[f"{country}-{code}".lower()] = code
        names[name.lower()] = code
    names.update(_ALIASES.get(country, {}))
    return names


def region_of_text(text: str | None, country: str | None) -> str | None:
    """The ISO 3166-2 code of a state/province written in a lead file ('FL',
    'Florida', 'us-fl'), read as a subdivision of ``country``; None when it is
    not one of them (the number's own region serves then)."""
    if not text or not country:
        return None
    code = _subdivision_names(country).get(" ".join(text.split()).lower().rstrip("."))
    return f"{country}-{code}" if code is not None else None


def _description_regions(country: str, description: str) -> str | None:
    names = _subdivision_names(country)
    codes = set()
    for part in description.split("/"):
        part = part.strip().lower()
        city, comma, code = part.rpartition(",")
        found = names.get(code.strip()) if comma else names.get(part)
        if found is None:
            return None
        codes.add(found)
    return "|".join(sorted(f"{country}-{c}" for c in codes))


def derive_area_code_regions() -> dict[str, str]:
    """NANP area code -> its rules region, from phonenumbers' geocoding data:
    the state or province of the area code's description ("Florida", or every
    "City, ST" under it naming the same one), else the number's country. The
    dialer ships the result (:mod:`dialer.leads.area_codes`): loading the
    geocoding data costs about 100 MB."""
    from phonenumbers.geodata import GEOCODE_DATA

    described: dict[str, set[str | None]] = {}
    for key, names in GEOCODE_DATA.items():
        if key.startswith("1") and len(key) >= 1 + _PREFIX and "en" in names:
            described.setdefault(key[1 : 1 + _PREFIX], set()).add(
                names["en"] if len(key) == 1 + _PREFIX else "\0" + names["en"])
    main = phonenumbers.region_code_for_country_code(1)
    regions: dict[str, str] = {}
    for npa in range(200, 1000):
        digits = str(npa)
        # The country (US, CA, PR, ...) of a number in the area code; phonenumbers
        # decides it from the area code alone.
        sample = phonenumbers.PhoneNumber(country_code=1, national_number=int(digits + "2345678"))
        country = phonenumbers.region_code_for_number(sample) or main
        names = described.get(digits, set())
        whole = [n for n in names if not n.startswith("\0")]
        found = None
        if whole:
            found = _description_regions(country, whole[0])
        elif names:
            parts = {_description_regions(country, n[1:]) for n in names}
            if len(parts) == 1:
                found = parts.pop()
        regions[digits] = found or country
    return regions


def _nanp_regions() -> dict[str, str]:
    from dialer.leads.area_codes import AREA_CODE_REGIONS

    return AREA_CODE_REGIONS


def _region_of(numobj) -> str | None:
    if numobj.country_code == 1:
        return _nanp_regions().get(str(numobj.national_number)[:_PREFIX])
    return phonenumbers.region_code_for_number(numobj)


def lead_region(text: str | None, phone: Phone) -> str | None:
    """A lead's rules region: the state/province its data gives (``text``) and
    the one its number gives, '|'-joined when they differ (the stricter rules of
    both apply); the number's alone when the text names no subdivision."""
    number = phone.region
    if not text:
        return number
    country = number.split("|")[0].split("-")[0] if number else None
    given = region_of_text(text, country)
    if given is None:
        return number
    if number is None or given == number:
        return given
    return "|".join(sorted({given, *number.split("|")} - {country}))


# --- How many leading national digits decide a NANP number ---------------------


_PREFIX = 3  # NANP area code length: key lengths are worked out per area code


def _pattern_depths(pattern: str) -> dict[str, int] | None:
    """For each 3-digit start a full-match pattern accepts, the deepest digit
    position (1-based) it restricts; positions after that accept any digit.

    None when the pattern is too complex to tell (then no prefix cache is used).
    """
    try:
        from re import _constants as c
        from re import _parser as p
    except ImportError:  # pragma: no cover - a Python without these internals
        return None

    repeats = tuple(
        getattr(c, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(c, name)
    )
    digits = "0123456789"

    def char_set(op, av) -> tuple[str, bool]:
        # (digits accepted, whether that is a restriction at all)
        if op is c.LITERAL:
            ch = chr(av)
            return (ch if ch in digits else ""), True
        if op is c.IN:
            accepted = set()
            for item_op, item in av:
                if item_op is c.LITERAL:
                    accepted.add(chr(item))
                elif item_op is c.RANGE:
                    accepted.update(chr(x) for x in range(item[0], item[1] + 1))
                elif item_op is c.CATEGORY and item is c.CATEGORY_DIGIT:
                    accepted.update(digits)
                else:
                    raise ValueError("unexpected character class")
            accepted &= set(digits)
            return "".join(sorted(accepted)), len(accepted) < 10
        raise ValueError(f"unexpected regex element {op}")

    # A state is (position, deepest restricted position, first digits consumed).
    def walk(items, states: set) -> set:
        for op, av in items:
            if op in (c.LITERAL, c.IN):
                accepted, restricts = char_set(op, av)
                nxt = set()
                for pos, deep, prefix in states:
                    if pos < _PREFIX:
                        for ch in accepted:
                            nxt.add((pos + 1, pos + 1 if restricts else deep, prefix + ch))
                    elif accepted:
                        nxt.add((pos + 1, pos + 1 if restricts else deep, prefix))
                states = nxt
            elif op is c.SUBPATTERN:
                states = walk(av[-1], states)
            elif op is c.BRANCH:
                states = set().union(*(walk(alt, states) for alt in av[1]))
            elif op in repeats:
                low, high, sub = av
                if high is c.MAXREPEAT or high > 20:
                    raise ValueError("unbounded repeat")
                reached = set()
                for count in range(high + 1):
                    if count >= low:
                        reached |= states
                    if count < high:
                        states = walk(sub, states)
                states = reached
            else:
                raise ValueError(f"unexpected regex element {op}")
            if len(states) > 200_000:
                raise ValueError("pattern too complex")
        return states

    try:
        final = walk(p.parse(pattern), {(0, 0, "")})
    except (ValueError, TypeError, RecursionError):
        return None
    depths: dict[str, int] = {}
    for _pos, deep, prefix in final:
        if len(prefix) < _PREFIX:
            return None  # a pattern shorter than an area code: give up on caching
        depths[prefix] = max(depths.get(prefix, 0), deep)
    return depths


@functools.cache
def _nanp_key_lengths() -> dict[str, int] | None:
    """Area code -> how many national digits decide validity, type and zones.

    Area codes no pattern accepts are absent (every such number is invalid).
    None when the metadata cannot be analysed.
    """
    from phonenumbers import PhoneMetadata

    lengths: dict[str, int] = {}
    for region in phonenumbers.region_codes_for_country_code(1):
        md = PhoneMetadata.metadata_for_region(region)
        if md is None:
            return None
        descs = [
            md.general_desc, md.fixed_line, md.mobile, md.toll_free, md.premium_rate,
            md.shared_cost, md.personal_number, md.voip, md.pager, md.uan, md.voicemail,
        ]
        patterns = [d.national_number_pattern for d in descs if d is not None and d.national_number_pattern]
        if md.leading_digits:
            # Matched at the start of the national number to pick the region.
            patterns.append(md.leading_digits)
        for pattern in patterns:
            depths = _pattern_depths(pattern)
            if depths is None:
                return None
            for prefix, deep in depths.items():
                lengths[prefix] = max(lengths.get(prefix, _PREFIX), deep)
    # Time-zone prefixes are keyed with the country code '1' in front.
    for key in pn_timezone.TIMEZONE_DATA:
        if key.startswith("1") and len(key) > 1 + _PREFIX:
            prefix = key[1 : 1 + _PREFIX]
            if prefix in lengths:
                lengths[prefix] = max(lengths[prefix], len(key) - 1)
    return lengths


class PhoneNormalizer:
    """Turns phone text into :class:`Phone`; one instance per import (it caches)."""

    def __init__(self, region: str = "US") -> None:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {region!r} (use a two-letter code such as US)")
        self.region = region
        self._nanp_region = phonenumbers.country_code_for_region(region) == 1
        self._key_lengths = _nanp_key_lengths()
        # Key digits -> zones of a valid number, or _INVALID.
        self._nanp_cache: dict[str, str | None] = {}
        # Area code -> rules region, read from the geocoding data at first use.
        self._regions: dict[str, str] | None = None

    def normalize(self, text: str) -> Phone:
        """The number in E.164 with its time zones, or :class:`InvalidPhone`."""
        digits = text.strip().translate(_FORMATTING)
        if digits.startswith("+1"):
            national = digits[2:]
        elif self._nanp_region and len(digits) == 11 and digits[0] == "1":
            national = digits[1:]
        elif self._nanp_region:
            national = digits
        else:
            national = ""
        if (
            len(national) == 10
            and national.isascii()
            and national.isdigit()
            and national[0] not in "01"
            and self._key_lengths is not None
        ):
            return self._nanp(national)
        return self._slow(text)

    def _nanp(self, national: str) -> Phone:
        key = national[: self._key_lengths.get(national[:_PREFIX], _PREFIX)]
        cache = self._nanp_cache
        try:
            zones = cache[key]
        except KeyError:
            numobj = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
            if phonenumbers.is_valid_number(numobj):
                zones = _zones_of(numobj)
            else:
                zones = _INVALID
            if len(cache) < 1_000_000:
                cache[key] = zones
        if zones is _INVALID:
            raise InvalidPhone("not a valid phone number")
        regions = self._regions
        if regions is None:
            regions = self._regions = _nanp_regions()
        return Phone("+1" + national, zones, regions.get(national[:_PREFIX]))

    def _slow(self, text: str) -> Phone:
        text = text.strip()
        if not text:
            raise InvalidPhone("no phone number")
        try:
            numobj = phonenumbers.parse(text, self.region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidPhone(f"not a phone number ({exc._msg.rstrip('.')})") from None
        if numobj.extension:
            raise InvalidPhone("has an extension; give the number only")
        if not phonenumbers.is_valid_number(numobj):
            raise InvalidPhone("not a valid phone number")
        return Phone(
            phonenumbers.format_number(numobj, PhoneNumberFormat.E164),
            _zones_of(numobj),
            _region_of(numobj),
        )
