"""Leads in: phone numbers, CSV import, do-not-call, calling hours and the hopper claim."""
