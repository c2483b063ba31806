"""The Asterisk Manager Interface: a sans-IO codec and a trio client.

``dialer.ami.codec`` is the sans-IO codec (bytes in, messages out; no trio):
``codec.framing`` finds message boundaries, ``codec.message`` is the message
model, ``codec.serialize`` writes messages, ``codec.parser`` joins the first
two and ``codec.errors`` holds its errors;
``dialer.ami.connection`` the trio client (:func:`open_ami`);
``dialer.ami.errors`` the client's errors; ``dialer.ami.pool`` the engine's
connections, each within its rate cap (``dialer.ami.ratelimit``);
``dialer.ami.timestamps`` maps Asterisk's event times onto the caller's clock;
``dialer.ami.tools`` the operator's one-liners behind ``dialer ami`` (ping,
command, events, originate) and ``dialer.ami.recorder`` ``dialer ami record``; a replaying
AMI peer for tests is ``tests/ami_replay.py``. The names below are importable from ``dialer.ami``
directly; they are loaded on first use, so importing the codec alone never
imports trio.

May import: dialer.errors, dialer.config. Nothing of the engine, pacing, the
call following, the database layer or the simulator: the client knows nothing
of what is dialed or stored.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "codec.parser": ["NEED_DATA", "CLOSED", "AMIParser"],
    "codec.message": ["Banner", "Message"],
    "codec.serialize": ["encode_message", "encode_action"],
    "codec.errors": ["AMIProtocolError", "LocalProtocolError", "RemoteProtocolError"],
    "connection": [
        "open_ami", "AMIConnection", "ConnectionStateChanged", "AMIStatistics", "next_action_id",
    ],
    "errors": [
        "AMIError", "ConnectError", "AuthenticationError", "NotConnected", "ConnectionLost",
        "ActionTimeout", "AMIActionError", "PermissionDenied",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dialer.ami' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dialer.ami.{module}"), name)
    globals()[name] = value
    return value
