"""The codec's errors: ours to fix (:class:`LocalProtocolError`) or the peer's (:class:`RemoteProtocolError`)."""

from __future__ import annotations


class AMIProtocolError(Exception):
    """Base class of the codec's errors."""


class LocalProtocolError(AMIProtocolError):
    """We tried to send something the protocol cannot carry."""


class RemoteProtocolError(AMIProtocolError):
    """The peer sent bytes that are not valid AMI.

    ``offset`` is the position in the received stream (0 = first byte ever
    received) of the offending message or line.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset
