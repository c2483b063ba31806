"""Access to the recordings of a real Asterisk's AMI in ../shared/ami-transcripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialer.ami.codec import NEED_DATA, AMIParser, Banner

TRANSCRIPTS = Path(__file__).resolve().parents[1].parent / "shared" / "ami-transcripts"


def read_messages(name: str) -> list:
    """Every message of NAME.txt, banner excluded, in order."""
    if not TRANSCRIPTS.is_dir():
        pytest.skip(f"no AMI recordings at {TRANSCRIPTS} (../shared is absent)")
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
