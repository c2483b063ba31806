"""The sans-IO AMI codec: bytes in, messages out, in the manner of h11; no I/O, no trio.

``errors`` (the codec's exceptions), ``framing`` (message boundaries in the
received bytes), ``message`` (:class:`Banner`, :class:`Message` and header
splitting), ``serialize`` (:func:`encode_message`, :func:`encode_action`) and
``parser`` (:class:`AMIParser`, which joins framing and the message model).
Each module imports only the ones listed before it. The names below are the
codec's public API, for code that wants them from one place.

May import: nothing else of dialer (the standard library only, no trio), so
that the simulator, the recorder and the client share one codec.
"""

from dialer.ami.codec.errors import AMIProtocolError, LocalProtocolError, RemoteProtocolError
from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import CLOSED, NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_action, encode_message

__all__ = [
    "NEED_DATA", "CLOSED", "Banner", "Message", "AMIParser", "encode_message", "encode_action",
    "AMIProtocolError", "LocalProtocolError", "RemoteProtocolError",
]
