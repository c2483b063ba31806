"""Following calls through AMI events, and writing what became of them.

``tracker`` matches AMI events to calls and moves each through its states;
``agents`` is the board of agents (free, talking, wrapping up); ``dispositions``
names how a call ended; ``breaker`` stops dialing on a run of failures;
``outcomes`` writes each ended call's attempt and what becomes of its lead;
``drops`` finds answered calls no agent took in time, for the drop message.

May import: dialer.ami (its codec, errors and timestamps), dialer.models,
dialer.compliance, dialer.campaigns, dialer.leads.hopper. Nothing that decides
how many to dial (the engine, pacing) or shows them (reports, consoles).
"""
