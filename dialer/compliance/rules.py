"""The telemarketing rules the dialer lives under, each defined once.

Every module that enforces or shows one of these figures imports it from here;
none writes the number itself. Sources:

* US: the FCC's TCPA rules, 47 CFR 64.1200 ("FCC"), and the FTC's
  Telemarketing Sales Rule, 16 CFR 310 ("TSR").
* US states: the statutes named with each entry of :data:`REGION_RULES`.
* UK: Ofcom, *Revised statement of policy on the persistent misuse of an
  electronic communications network or service* (2016), its annex on
  abandoned and silent calls ("Ofcom").

This module holds values only (no database, no trio); the abandon-rate query
built on them is :mod:`dialer.compliance.abandon`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = [
    "CONNECT_DEADLINE",
    "MIN_RING",
    "MAX_ABANDON_RATE",
    "ROLLING_30D",
    "LAST_24H",
    "ABANDONED_REST",
    "EARLIEST_CALL",
    "LATEST_CALL",
    "CALL_CAP_PERIOD",
    "RegionRule",
    "REGION_RULES",
]

#: Seconds within which an answered call must reach a live agent; later, it is
#: abandoned ("dropped"). FCC 64.1200(a)(7)(i) and TSR 310.4(b)(4)(i): "within
#: two (2) seconds of the completed greeting"; Ofcom likewise.
CONNECT_DEADLINE = 2.0

#: Seconds a call must ring before the dialer may give up on it (or hang it up
#: unanswered). TSR 310.4(b)(1)(iv) and FCC 64.1200(a)(6): "at least fifteen
#: (15) seconds or four (4) rings".
MIN_RING = 15

#: Abandoned calls as a share of calls answered by a person, at most.
#: FCC 64.1200(a)(7)(i): 3 % per campaign over a 30-day period; TSR
#: 310.4(b)(4)(i): 3 % over the campaign's life if shorter than 30 days, else
#: over each 30-day period; Ofcom: 3 % over any 24 hours.
MAX_ABANDON_RATE = 0.03

#: The US measurement period of the abandon rate (FCC 64.1200(a)(7)(i), TSR).
ROLLING_30D = dt.timedelta(days=30)

#: The UK measurement period of the abandon rate (Ofcom).
LAST_24H = dt.timedelta(hours=24)

#: No new call to a number within this long after a call to it was abandoned,
#: in any campaign. Ofcom: a number whose call was abandoned is called
#: again within 72 hours only with a live agent guaranteed; the dialer never
#: guarantees one, so it does not call.
ABANDONED_REST = dt.timedelta(hours=72)

#: The calling window in the called party's local time. FCC 64.1200(c)(1) and
#: TSR 310.4(c): no calls before 8 a.m. or after 9 p.m.
EARLIEST_CALL = dt.time(8, 0)
LATEST_CALL = dt.time(21, 0)

#: The period over which a region's call cap counts the calls placed to one
#: number (the state statutes below: "over a 24-hour period").
CALL_CAP_PERIOD = dt.timedelta(hours=24)


@dataclass(frozen=True)
class RegionRule:
    """Calling rules of one region, on top of the campaign's own.

    ``region`` is an ISO 3166 code: a country (``US``, ``GB``) or a
    subdivision (``US-FL``, ``CA-ON``). A subdivision's leads are under its
    country's rule too. ``start``/``end`` bound the calling window in the
    called party's local time (``None``: no bound of the region's own);
    ``max_calls_24h`` caps the calls placed to one number over
    :data:`CALL_CAP_PERIOD`, in every campaign together (``None``: no cap).
    """

    region: str
    start: dt.time | None = None
    end: dt.time | None = None
    max_calls_24h: int | None = None
    source: str = ""


#: The rules shipped with the dialer, by region. Operators add regions and
#: override these with ``dialer rules set`` (see :mod:`dialer.leads.regions`).
REGION_RULES: dict[str, RegionRule] = {
    rule.region: rule
    for rule in (
        RegionRule("US", EARLIEST_CALL, LATEST_CALL, None,
                   "47 CFR 64.1200(c)(1); 16 CFR 310.4(c)"),
        # Florida Telephone Solicitation Act, as amended by ch. 2021-174, Laws of Florida.
        RegionRule("US-FL", dt.time(8, 0), dt.time(20, 0), 3,
                   "Fla. Stat. 501.616(6)(a) and (b), as amended by SB 1120 (2021)"),
        # Oklahoma Telephone Solicitation Act of 2022 (HB 3168), in force 2022-11-01.
        RegionRule("US-OK", dt.time(8, 0), dt.time(20, 0), 3,
                   "Okla. Stat. tit. 15, 775C.1 et seq. (Telephone Solicitation Act of 2022, HB 3168)"),
        # Maryland Stop the Spam Calls Act of 2023 (SB 90), in force 2024-01-01.
        RegionRule("US-MD", dt.time(8, 0), dt.time(20, 0), 3,
                   "Md. Code, Com. Law 14-4502 (Stop the Spam Calls Act of 2023, SB 90)"),
    )
}
