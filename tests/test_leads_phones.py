"""Phone normalisation: the NANP fast path gives exactly phonenumbers' answers."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.leads import phones
from dialer.leads.phones import InvalidPhone, InvalidTimezone, PhoneNormalizer, normalize_timezone


def reference(text: str, region: str):
    """phonenumbers' own answer: (E.164, zones) or None when invalid."""
    try:
        numobj = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if numobj.extension or not phonenumbers.is_valid_number(numobj):
        return None
    return phonenumbers.format_number(numobj, phonenumbers.PhoneNumberFormat.E164), phones._zones_of(numobj)


def ours(normalizer: PhoneNormalizer, text: str):
    try:
        phone = normalizer.normalize(text)
    except InvalidPhone:
        return None
    return phone.e164, phone.timezone


AREA_CODES = sorted(phones._nanp_key_lengths())
FORMATS = ["{a}{b}{c}", "({a}) {b}-{c}", "{a}-{b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1{a}{b}{c}", "+1{a}{b}{c}"]


@settings(max_examples=1500, deadline=None)
@given(
    area=st.one_of(st.sampled_from(AREA_CODES), st.from_regex(r"\A[0-9]{3}\Z")),
    exchange=st.from_regex(r"\A[0-9]{3}\Z"),
    line=st.from_regex(r"\A[0-9]{4}\Z"),
    fmt=st.sampled_from(FORMATS),
    region=st.sampled_from(["US", "CA", "JM", "GB"]),
)
def test_fast_path_agrees_with_phonenumbers(area, exchange, line, fmt, region):
    text = fmt.format(a=area, b=exchange, c=line)
    normalizer = PhoneNormalizer(region)
    # Twice: the second answer comes from the prefix cache.
    assert ours(normalizer, text) == reference(text, region)
    assert ours(normalizer, text) == reference(text, region)


@pytest.mark.parametrize("prefix", ["246", "876", "658", "800", "264", "787"])
def test_cache_is_exact_for_area_codes_decided_by_many_digits(prefix):
    # Barbados and Jamaica patterns look at seven digits; neighbours in one
    # cache key must not share an answer unless phonenumbers agrees.
    normalizer = PhoneNormalizer("US")
    for n in range(0, 10_000_000, 7919):
        text = f"{prefix}{n:07d}"
        assert ours(normalizer, text) == reference(text, "US"), text


def test_key_lengths_cover_the_deepest_patterns():
    lengths = phones._nanp_key_lengths()
    assert lengths is not None
    assert lengths["246"] == 7 and lengths["876"] == 7
    assert all(3 <= n <= 10 for n in lengths.values())
    # Area codes no region accepts are absent: every such number is invalid.
    assert "000" not in lengths and "199" not in lengths


@pytest.mark.parametrize(
    "pattern, depths",
    [
        (r"[2-9]\d{2}", {f"{a}{b}{c}": 1 for a in "23456789" for b in "0123456789" for c in "0123456789"}),
        (r"20[1-3]\d{2}|3\d{4}", {"201": 3, "202": 3, "203": 3, **{f"3{b}{c}": 1 for b in "0123456789" for c in "0123456789"}}),
        (r"(?:21[02])\d{3}4", {"210": 7, "212": 7}),
    ],
)
def test_pattern_depths(pattern, depths):
    assert phones._pattern_depths(pattern) == depths


def test_pattern_depths_gives_up_on_unbounded_patterns():
    assert phones._pattern_depths(r"2\d+") is None


def test_multi_zone_numbers_keep_every_zone_sorted():
    phone = PhoneNormalizer("US").normalize("(800) 555-0100")
    zones = phone.timezone.split("|")
    assert len(zones) > 10 and zones == sorted(zones)
    assert "America/New_York" in zones and "Pacific/Honolulu" in zones


@pytest.mark.parametrize(
    "text, expected",
    [
        ("America/New_York", "America/New_York"),
        (" America/Denver | America/Chicago ", "America/Chicago|America/Denver"),
        ("America/Chicago|America/Chicago", "America/Chicago"),
    ],
)
def test_timezone_column_values(text, expected):
    assert normalize_timezone(text) == expected


@pytest.mark.parametrize("text", ["Eastern", "America/Nowhere", "America/Chicago|", "EST+5"])
def test_bad_timezone_values(text):
    with pytest.raises(InvalidTimezone):
        normalize_timezone(text)


def test_unknown_region_is_refused():
    with pytest.raises(ValueError, match="unknown region 'ZZ'"):
        PhoneNormalizer("ZZ")
