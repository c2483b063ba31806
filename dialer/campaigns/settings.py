"""Every campaign setting, once: its name, flag, text form, check and default.

Every setting has a name (``ring_timeout``), a command-line flag
(``--ring-timeout``), a text form accepted by ``dialer campaign set NAME
key=value`` and a typed value stored in its own column of ``campaigns``.
:data:`SETTINGS` is the single table of them; a bad value raises
:class:`SettingError`, whose message names the setting. The compliance bounds
come from :mod:`dialer.compliance.rules`. No database here: the settings are
read from and written to a :class:`~dialer.models.Campaign` row.
"""


from __future__ import annotations

import datetime as dt
import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialer.compliance import rules
from dialer.errors import UserError
from dialer.models import Campaign, DialMode, Disposition


# Compliance bounds: see dialer.compliance.rules for where each comes from.
MIN_RING_TIMEOUT = rules.MIN_RING
MAX_ABANDON_TARGET = rules.MAX_ABANDON_RATE
EARLIEST_CALL = rules.EARLIEST_CALL
LATEST_CALL = rules.LATEST_CALL
ABANDONED_REDIAL_DELAY = int(rules.ABANDONED_REST.total_seconds())

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {name: i for i, name in enumerate(WEEKDAYS)} | {
    full: i
    for i, full in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
}
# Placeholders the channel template may use besides lead fields.
PHONE_PLACEHOLDERS = ("e164", "digits", "national")
LEAD_FIELDS = ("first_name", "last_name", "timezone", "region", "postal_code", "priority", "id")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIALPLAN_NAME = re.compile(r"[A-Za-z0-9_.+*#-]{1,80}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class SettingError(UserError):
    """A campaign setting's value is refused; the message names the setting."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.setting = name
        self.problem = problem


class _Bad(ValueError):
    """A value's problem, before the setting name is attached."""


# --- Parsers: text -> value; checkers: value -> value --------------------------


def _no_control(text: str) -> str:
    if _CONTROL.search(text):
        raise _Bad(f"contains a control character in {text!r}")
    return text


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _Bad(f"{text!r} is not a whole number") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise _Bad(f"{text!r} is not a number") from None
    return value


def _check_int(value: Any, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _Bad(f"{value!r} is not a whole number")
    if not low <= value <= high:
        raise _Bad(f"must be between {low} and {high}{unit}, not {value}")
    return value


def _check_float(value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{value!r} is not a number")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise _Bad(f"must be between {low:g} and {high:g}, not {value:g}")
    return value


def _parse_seconds(text: str) -> int:
    """'600', '600s', '10m', '1h', '3d' -> seconds."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise _Bad(f"{text!r} is not a duration (seconds, or with s/m/h/d: 90, 10m, 1h, 3d)")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not seconds.is_integer():
        raise _Bad(f"{text!r} is not a whole number of seconds")
    return int(seconds)


def _parse_mode(text: str) -> str:
    return _check_mode(text.strip().lower())


def _check_mode(value: Any) -> str:
    try:
        return DialMode(value).value
    except ValueError:
        modes = ", ".join(m.value for m in DialMode)
        raise _Bad(f"{value!r} is not a dial mode ({modes})") from None


def _check_dial_ratio(value: Any) -> float:
    return _check_float(value, 0.1, 10.0)


def _check_max_dial_level(value: Any) -> float:
    return _check_float(value, 1.0, 20.0)


def _parse_abandon_target(text: str) -> float:
    text = text.strip()
    if text.endswith("%"):
        return _check_abandon_target(_parse_float(text[:-1]) / 100)
    value = _parse_float(text)
    if value >= 1:
        raise _Bad(f"{text!r}: give a fraction (0.03) or a percentage (3%)")
    return _check_abandon_target(value)


def _check_abandon_target(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Bad(f"{value!r} is not a number")
    value = float(value)
    if not 0 < value <= MAX_ABANDON_TARGET + 1e-12:
        raise _Bad(
            f"must be above 0 and at most {MAX_ABANDON_TARGET:.0%} of answered calls, not {value:.4g}"
        )
    return round(value, 6)


def _check_channel(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must not be empty")
    value = _no_control(value).strip()
    if len(value) > 255:
        raise _Bad("is longer than 255 characters")
    names = _template_fields(value)
    if not any(name in PHONE_PLACEHOLDERS for name in names):
        raise _Bad(f"{value!r} has no phone placeholder ({{e164}}, {{digits}} or {{national}})")
    return value


def _template_fields(template: str) -> list[str]:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _Bad(f"{template!r}: {exc}") from None
    names = []
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise _Bad(f"{template!r}: placeholder {{{field}}} must be a plain field name")
        names.append(field)
    return names


@functools.lru_cache(maxsize=256)
def _channel_fields(template: str) -> tuple[str, ...]:
    """The placeholders of a channel template (read once per template)."""
    return tuple(_template_fields(template))


def _check_dialplan_name(value: Any) -> str:
    if not isinstance(value, str) or not _DIALPLAN_NAME.fullmatch(value.strip()):
        raise _Bad(f"{value!r} is not a dialplan name (letters, digits and _ . + * # -, at most 80)")
    return value.strip()


def _check_priority(value: Any) -> int:
    return _check_int(value, 1, 1_000_000)


def _parse_optional(check: Callable[[Any], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        text = _no_control(text).strip()
        if text.lower() in ("", "none"):
            return None
        return check(text)

    return parse


def _check_optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checker(value: Any) -> Any:
        return None if value is None else check(value)

    return checker


def _check_caller_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must not be empty (use 'none' to unset it)")
    value = _no_control(value).strip()
    if len(value) > 255:
        raise _Bad("is longer than 255 characters")
    return value


def _check_ring_timeout(value: Any) -> int:
    value = _check_int(value, 0, 10**9)
    if value < MIN_RING_TIMEOUT:
        raise _Bad(f"must be at least {MIN_RING_TIMEOUT} seconds, not {value}")
    if value > 300:
        raise _Bad(f"must be at most 300 seconds, not {value}")
    return value


_OFF = ("off", "none", "never", "no")


def _parse_hangup_after(text: str) -> int:
    if text.strip().lower() in _OFF:
        return 0
    return _check_hangup_after(_parse_seconds(text))


def _check_hangup_after(value: Any) -> int:
    value = _check_int(value, 0, 10**9)
    if value and value < MIN_RING_TIMEOUT:
        raise _Bad(f"must be off (0) or at least {MIN_RING_TIMEOUT} seconds of ringing, not {value}")
    if value > 300:
        raise _Bad(f"must be at most 300 seconds, not {value}")
    return value


def _fmt_hangup_after(value: Any) -> str:
    return str(value) if value else "off"


def _parse_time(text: str) -> dt.time:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59:
        raise _Bad(f"{text!r} is not a time of day (HH:MM)")
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour == 24:
        raise _Bad(f"{text!r} is not a time of day (HH:MM, 00:00-23:59)")
    return dt.time(hour, minute)


def _parse_calling_window(text: str) -> tuple[dt.time, dt.time]:
    start, sep, end = text.partition("-")
    if not sep:
        raise _Bad(f"{text!r} is not a window (HH:MM-HH:MM, e.g. 08:00-21:00)")
    return _check_calling_window((_parse_time(start), _parse_time(end)))


def _check_calling_window(value: Any) -> tuple[dt.time, dt.time]:
    try:
        start, end = value
    except (TypeError, ValueError):
        raise _Bad(f"{value!r} is not a (start, end) pair of times") from None
    if not isinstance(start, dt.time) or not isinstance(end, dt.time):
        raise _Bad(f"{value!r} is not a (start, end) pair of times")
    if not start < end:
        raise _Bad(f"start {start:%H:%M} must be before end {end:%H:%M}")
    if start < EARLIEST_CALL or end > LATEST_CALL:
        raise _Bad(
            f"{start:%H:%M}-{end:%H:%M} is outside the legal calling hours"
            f" {EARLIEST_CALL:%H:%M}-{LATEST_CALL:%H:%M} (called party's local time)"
        )
    return (start.replace(tzinfo=None), end.replace(tzinfo=None))


def _parse_calling_days(text: str) -> list[int]:
    days: set[int] = set()
    items = [item.strip().lower() for item in text.split(",")]
    if not any(items):
        raise _Bad("no day given (e.g. mon-fri or mon,wed,sat)")
    for item in items:
        if item in ("daily", "all"):
            days.update(range(7))
            continue
        first, sep, last = item.partition("-")
        try:
            a = _DAY_NAMES[first.strip()]
            b = _DAY_NAMES[last.strip()] if sep else a
        except KeyError:
            raise _Bad(f"{item!r} is not a day or range of days (mon..sun, e.g. mon-fri)") from None
        # A range may wrap around the week end: fri-mon.
        i = a
        while True:
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    return sorted(days)


def _check_calling_days(value: Any) -> list[int]:
    if isinstance(value, str):
        return _parse_calling_days(value)
    try:
        days = sorted(set(value))
    except TypeError:
        raise _Bad(f"{value!r} is not a set of weekdays") from None
    if not days:
        raise _Bad("no day given")
    if any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days):
        raise _Bad(f"{value!r}: weekdays are 0 (Monday) .. 6 (Sunday)")
    return days


def _parse_holidays(text: str) -> list[str]:
    text = text.strip()
    if text.lower() in ("", "none"):
        return []
    dates = []
    for item in text.split(","):
        try:
            dates.append(dt.date.fromisoformat(item.strip()))
        except ValueError:
            raise _Bad(f"{item.strip()!r} is not a date (YYYY-MM-DD)") from None
    return _check_holidays(dates)


def _check_holidays(value: Any) -> list[str]:
    if isinstance(value, str):
        return _parse_holidays(value)
    out = set()
    for item in value:
        if isinstance(item, str):
            try:
                item = dt.date.fromisoformat(item)
            except ValueError:
                raise _Bad(f"{item!r} is not a date (YYYY-MM-DD)") from None
        if isinstance(item, dt.datetime) or not isinstance(item, dt.date):
            raise _Bad(f"{item!r} is not a date")
        out.add(item.isoformat())
    return sorted(out)


def _check_max_attempts(value: Any) -> int:
    return _check_int(value, 1, 100)


_RETRYABLE = tuple(d.value for d in Disposition if d is not Disposition.CONNECTED)


def _parse_retry_delays(text: str) -> dict[str, int]:
    text = text.strip()
    if text.lower() in ("", "none"):
        return {}
    delays: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise _Bad(f"{item.strip()!r} is not disposition=seconds (e.g. busy=600,no_answer=1h)")
        if key in delays:
            raise _Bad(f"{key!r} is given twice")
        delays[key] = _parse_seconds(value)
    return _check_retry_delays(delays)


def _check_retry_delays(value: Any) -> dict[str, int]:
    if isinstance(value, str):
        return _parse_retry_delays(value)
    if not isinstance(value, Mapping):
        raise _Bad(f"{value!r} is not a map of disposition to seconds")
    out = {}
    for key, seconds in value.items():
        key = str(key)
        if key not in _RETRYABLE:
            raise _Bad(f"{key!r} is not a disposition that may be retried ({', '.join(_RETRYABLE)})")
        seconds = _check_int(seconds, 0, 366 * 86400, " seconds")
        if key == Disposition.DROPPED and seconds < ABANDONED_REDIAL_DELAY:
            raise _Bad(
                f"dropped={seconds}: an abandoned call may not be redialed within"
                f" {ABANDONED_REDIAL_DELAY // 3600} h"
                f" (at least {ABANDONED_REDIAL_DELAY} seconds)"
            )
        out[key] = seconds
    return {key: out[key] for key in _RETRYABLE if key in out}


def _check_max_concurrent(value: Any) -> int:
    return _check_int(value, 1, 100_000)


# --- Formatting: value -> text -----------------------------------------------


def _fmt_plain(value: Any) -> str:
    return "none" if value is None else str(value)


def _fmt_float(value: float) -> str:
    return f"{value:g}"


def _fmt_window(value: tuple[dt.time, dt.time]) -> str:
    return f"{value[0]:%H:%M}-{value[1]:%H:%M}"


def _fmt_days(days: Iterable[int]) -> str:
    days = sorted(set(days))
    if days == list(range(7)):
        return "mon-sun"
    # Collapse consecutive runs: 0,1,2,3,4 -> mon-fri.
    runs: list[list[int]] = []
    for d in days:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}")
        else:
            parts.extend(WEEKDAYS[d] for d in run)
    return ",".join(parts)


def _fmt_holidays(value: list[str]) -> str:
    return ",".join(value) if value else "none"


def _fmt_delays(value: Mapping[str, int]) -> str:
    ordered = [(k, value[k]) for k in _RETRYABLE if k in value]
    return ",".join(f"{k}={v}" for k, v in ordered) if ordered else "none"


def _fmt_abandon(value: float) -> str:
    return f"{value * 100:g}%"


# --- The table of settings ----------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    check: Callable[[Any], Any]
    format: Callable[[Any], str]
    metavar: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _s(name, default, parse, check, fmt, metavar, help) -> Setting:
    return Setting(name, default, parse, check, fmt, metavar, help)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        _s("mode", "progressive", _parse_mode, _check_mode, _fmt_plain, "MODE",
           "progressive (calls per free agent x dial_ratio), predictive (adaptive dial level,"
           " abandon rate kept under target) or unattended (no agents: answered calls go"
           " to the connect target)"),
        _s("dial_ratio", 1.0, lambda t: _check_dial_ratio(_parse_float(t)), _check_dial_ratio,
           _fmt_float, "RATIO", "progressive: calls placed per free agent (0.1-10)"),
        _s("max_dial_level", 3.0, lambda t: _check_max_dial_level(_parse_float(t)),
           _check_max_dial_level, _fmt_float, "LEVEL",
           "predictive: most calls in flight per available agent (1-20)"),
        _s("abandon_target", MAX_ABANDON_TARGET, _parse_abandon_target, _check_abandon_target, _fmt_abandon,
           "RATE", "abandoned calls as a share of answered calls (3% or 0.03; at most 3%)"),
        _s("channel", "PJSIP/{digits}@carrier", _check_channel, _check_channel, _fmt_plain,
           "TEMPLATE", "Originate channel; placeholders {e164} (+14155550100), {digits}"
           " (14155550100), {national} (4155550100) and lead fields such as {first_name}"),
        _s("context", "dialer", _check_dialplan_name, _check_dialplan_name, _fmt_plain,
           "CONTEXT", "dialplan context answered calls are connected to"),
        _s("exten", "s", _check_dialplan_name, _check_dialplan_name, _fmt_plain, "EXTEN",
           "extension in that context"),
        _s("priority", 1, lambda t: _check_priority(_parse_int(t)), _check_priority, _fmt_plain,
           "N", "priority in that extension"),
        _s("queue", None, _parse_optional(_check_dialplan_name),
           _check_optional(_check_dialplan_name), _fmt_plain, "QUEUE",
           "agent queue whose members take the calls ('none' in unattended mode)"),
        _s("caller_id", None, _parse_optional(_check_caller_id), _check_optional(_check_caller_id),
           _fmt_plain, "CALLERID", "caller ID presented, e.g. '\"Acme\" <15550001000>'"),
        _s("ring_timeout", 25, lambda t: _check_ring_timeout(_parse_seconds(t)),
           _check_ring_timeout, _fmt_plain, "SECONDS",
           "how long a call rings before it counts as no answer (15-300)"),
        _s("hangup_after", 0, _parse_hangup_after, _check_hangup_after, _fmt_hangup_after,
           "SECONDS", "predictive: a call that has rung this long (15 or more) may be hung up"
           " when no agent is likely to be free for it; off: calls ring until answered or"
           " ring_timeout"),
        _s("calling_window", (EARLIEST_CALL, LATEST_CALL), _parse_calling_window,
           _check_calling_window, _fmt_window, "HH:MM-HH:MM",
           "hours in the lead's local time when calls may be placed (within 08:00-21:00)"),
        _s("calling_days", list(range(7)), _parse_calling_days, _check_calling_days, _fmt_days,
           "DAYS", "weekdays calls may be placed on, local time: mon-fri, mon,wed,sat, mon-sun"),
        _s("holidays", [], _parse_holidays, _check_holidays, _fmt_holidays, "DATES",
           "local dates with no calls: 2026-12-25,2027-01-01 (or none)"),
        _s("max_attempts", 3, lambda t: _check_max_attempts(_parse_int(t)), _check_max_attempts,
           _fmt_plain, "N", "calls placed to one lead at most (1-100)"),
        _s("retry_delays",
           {"dropped": ABANDONED_REDIAL_DELAY, "no_answer": 3600, "busy": 600,
            "congestion": 900, "failed": 1800, "unknown": 3600},
           _parse_retry_delays, _check_retry_delays, _fmt_delays, "DISP=SECONDS,...",
           "wait before calling a lead again, by disposition (busy=600,no_answer=1h);"
           " a disposition not listed is not retried"),
        _s("max_concurrent", 10, lambda t: _check_max_concurrent(_parse_int(t)),
           _check_max_concurrent, _fmt_plain, "N", "most calls in flight for this campaign"),
    )
}

# Settings stored in columns of the same name; calling_window is two columns.
_WINDOW_COLUMNS = ("calling_window_start", "calling_window_end")


def parse_setting(name: str, text: str) -> Any:
    """A setting's typed value from its text form; SettingError names the setting."""
    setting = _setting(name)
    if not isinstance(text, str):
        raise SettingError(name, f"{text!r} is not text")
    try:
        return setting.parse(text)
    except _Bad as exc:
        raise SettingError(name, str(exc)) from None


def check_setting(name: str, value: Any) -> Any:
    """A setting's value, checked and normalised; text is parsed first."""
    setting = _setting(name)
    try:
        if isinstance(value, str) and setting.parse is not setting.check:
            return setting.parse(value)
        return setting.check(value)
    except _Bad as exc:
        raise SettingError(name, str(exc)) from None


def format_setting(name: str, value: Any) -> str:
    """The text form of a setting's value, as ``campaign set`` accepts it."""
    return _setting(name).format(value)


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["ring_timeout=30", "mode=predictive"]`` -> typed values."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"{item!r}: expected setting=value (e.g. ring_timeout=30)")
        if name in values:
            raise SettingError(name, "given twice")
        values[name] = parse_setting(name, text)
    return values


def _setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise UserError(
            f"unknown setting {name!r} (settings: {', '.join(SETTINGS)})"
        ) from None


def check_combination(values: Mapping[str, Any]) -> None:
    if values["dial_ratio"] > values["max_dial_level"]:
        raise SettingError(
            "dial_ratio",
            f"{values['dial_ratio']:g} is above max_dial_level {values['max_dial_level']:g}",
        )
    if values["hangup_after"] and values["hangup_after"] >= values["ring_timeout"]:
        raise SettingError(
            "hangup_after",
            f"{values['hangup_after']} s is not below ring_timeout {values['ring_timeout']} s"
            " (calls would time out first)",
        )


def campaign_settings(campaign: Campaign) -> dict[str, Any]:
    """Every setting's typed value for a campaign, in :data:`SETTINGS` order."""
    values = {}
    for name in SETTINGS:
        if name == "calling_window":
            values[name] = (campaign.calling_window_start, campaign.calling_window_end)
        elif name == "retry_delays":
            # jsonb does not keep key order: give them in Disposition order.
            delays = campaign.retry_delays
            values[name] = {k: delays[k] for k in _RETRYABLE if k in delays}
        else:
            values[name] = getattr(campaign, name)
    return values


def apply_settings(campaign: Campaign, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if name == "calling_window":
            campaign.calling_window_start, campaign.calling_window_end = value
        else:
            setattr(campaign, name, value)


def render_channel(template: str, phone_e164: str, fields: Mapping[str, Any] | None = None) -> str:
    """The Originate channel for one lead.

    ``{e164}``, ``{digits}`` and ``{national}`` come from the number (national
    is the number without its country code, for NANP numbers the ten digits);
    any other placeholder from ``fields`` (lead columns, then custom fields).
    Raises ValueError when a placeholder has no value or the result would
    contain a control character.
    """
    names = _channel_fields(template)
    values: dict[str, Any] = dict(fields or {})
    values.update(e164=phone_e164, digits=phone_e164.lstrip("+"))
    if "national" in names:
        # Parsing the number costs more than the rest together: only when used.
        import phonenumbers

        try:
            values["national"] = str(phonenumbers.parse(phone_e164).national_number)
        except phonenumbers.NumberParseException:
            raise ValueError(f"{phone_e164!r} is not an E.164 number") from None
    missing = [n for n in names if values.get(n) is None]
    if missing:
        raise ValueError(f"channel {template!r}: no value for {{{missing[0]}}}")
    result = template.format_map({n: values[n] for n in names})
    if _CONTROL.search(result):
        raise ValueError(f"channel {template!r}: a value contains a control character")
    return result
