"""Serialization: headers to bytes, refusing what the wire cannot carry.

A message is ``Key: Value\\r\\n`` lines and an empty line. Keys must be tokens
and values must hold no CR, LF or NUL, or the peer would read another message
than the one meant; :class:`LocalProtocolError` names the offending field.
Values are encoded as UTF-8 with ``surrogateescape``, so a value received
with bytes that are not UTF-8 is written back byte for byte.
"""

from __future__ import annotations

from typing import Iterable

from dialer.ami.codec.errors import LocalProtocolError
from dialer.ami.codec.message import TOKEN


def encode_message(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialise one message: ``Key: Value`` lines and the empty line."""
    headers = headers if isinstance(headers, list) else list(headers)
    try:
        text = "".join([f"{key}: {value}\r\n" for key, value in headers])
    except (TypeError, ValueError):
        raise LocalProtocolError("AMI headers must be (key, value) pairs") from None
    if headers and not _sendable(headers, text):
        raise _bad_field(headers)
    return (text + "\r\n").encode("utf-8", "surrogateescape")


def _sendable(headers: list[tuple[str, str]], text: str) -> bool:
    """Every key a token and every value a str without CR, LF or NUL.

    Checked on whole lists and on the text, in C, rather than header by header.
    """
    keys = [key for key, _ in headers]
    try:
        joined = "".join(keys)  # (TypeError if a key or a value is not a str)
        "".join([value for _, value in headers])
    except TypeError:
        return False
    n = len(headers)
    return (
        "" not in keys
        and TOKEN.fullmatch(joined) is not None  # tokens joined are one token
        # Then the text holds one CR and one LF per line, and no NUL.
        and text.count("\r") == n
        and text.count("\n") == n
        and "\0" not in text
    )


def encode_action(
    action: str,
    headers: Iterable[tuple[str, str]] = (),
    action_id: str | None = None,
) -> bytes:
    """Serialise ``Action: <action>`` (plus ``ActionID`` if given) and the headers."""
    if not isinstance(action, str) or not action:
        raise LocalProtocolError(f"invalid AMI action name {action!r}")
    first = [("Action", action)]
    rest = list(headers)
    if action_id is not None:
        first.append(("ActionID", action_id))
        for key, _ in rest:
            if isinstance(key, str) and key.lower() == "actionid":
                raise LocalProtocolError(
                    f"action {action!r}: ActionID given both as argument and as header"
                )
    return encode_message(first + rest)


def _bad_field(headers: list[tuple[str, str]]) -> LocalProtocolError:
    """The error naming the first header that cannot be sent."""
    for index, (key, value) in enumerate(headers):
        if not isinstance(key, str) or not TOKEN.fullmatch(key):
            return LocalProtocolError(
                f"AMI header #{index + 1} has an invalid name {key!r} (must be a token)"
            )
        if not isinstance(value, str):
            return LocalProtocolError(
                f"AMI header {key!r}: value must be str, not {type(value).__name__}"
            )
        for bad, label in (("\r", "CR"), ("\n", "LF"), ("\0", "NUL")):
            if bad in value:
                return LocalProtocolError(f"AMI header {key!r}: value contains {label}")
    return LocalProtocolError("AMI message cannot be encoded")  # pragma: no cover
