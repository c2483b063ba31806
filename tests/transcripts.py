"""The project's recordings of a real Asterisk's AMI (``tests/transcripts/``).

Re-recorded from the test suite's Asterisk with ``python -m tests.record_transcripts``.
"""

from __future__ import annotations

import json
from pathlib import Path

from dialer.ami.codec.message import Banner
from dialer.ami.codec.parser import NEED_DATA, AMIParser

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"


def read_messages(name: str) -> list:
    """Every message of NAME.txt, banner excluded, in order."""
    parser = AMIParser(role="client")
    parser.receive_data((TRANSCRIPTS / f"{name}.txt").read_bytes())
    messages = []
    while True:
        item = parser.next_event()
        if item is NEED_DATA:
            break
        if not isinstance(item, Banner):
            messages.append(item)
    return messages


def read_timeline(name: str) -> dict:
    return json.loads((TRANSCRIPTS / f"{name}.json").read_text())
