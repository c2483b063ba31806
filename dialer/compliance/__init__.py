"""The telemarketing rules the dialer lives under, and the abandon rate measured against them.

``rules`` holds each regulatory figure once (the 2-second connect, the
15-second ring, the 72-hour rest, the 3 % target, the 30-day and 24-hour
windows) with its source; ``abandon`` is the one definition of the abandon
rate and the query builder for any window.

May import: dialer.models (``abandon`` only; ``rules`` imports nothing).
"""
