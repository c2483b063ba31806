"""Leads in, and out to the dialer: everything about the numbers to call.

``phones`` normalises numbers to E.164 and finds their time zones; ``importer``
loads a CSV of leads into a campaign, reading the file through ``leadfile``
(header, encoding, rejects file) and writing through ``loadsql`` (the bulk
statements); ``dnc`` keeps the do-not-call list;
``calling_hours`` says when a lead may be called in its own local time and
``regions`` which calling rules its region adds (the stricter wins), its
region read from its data or its number (``area_codes``: NANP area code to
state or province);
``hopper`` claims the leads that are due, atomically and under a lease, and
hands them back.

May import: dialer.errors, dialer.models, dialer.db, dialer.audit,
dialer.compliance, dialer.campaigns. Nothing of AMI, the engine, pacing, the
call following or the consoles.
"""
