"""The supervisor's web console: wallboard, campaign control, lead upload, JSON API, metrics.

``dialer web`` serves :func:`dialer.web.app.create_app` (the route table) with Hypercorn on
trio (:mod:`.server`). The pages are in :mod:`.pages`, the JSON API in :mod:`.api`, what
both share (who is asking, errors) in :mod:`.request`; :mod:`.auth` keeps users, sessions
and tokens, :mod:`.board` the wallboard, :mod:`.metrics` the Prometheus text.
The console reads only the database (campaigns, leads, attempts and the
engines' ``live_state`` rows), so it works with engines in other processes
or on other hosts; every change it makes goes through the same library
functions as the command line and is written to the audit log.

May import: dialer.errors, dialer.config, dialer.models, dialer.db, dialer.audit,
dialer.campaigns, dialer.leads, dialer.reports. Never the engine, pacing, AMI or
the simulator.
"""
