"""Errors raised by the AMI client.

Two questions matter to a caller that sent an action: could it have been
executed, and is it the user's to fix?

* :class:`NotConnected`: nothing was sent; sending it elsewhere is safe.
* :class:`ConnectionLost` and :class:`ActionTimeout` (when ``sent``): it may
  have been sent and executed; the outcome is unknown. The client never
  resends it.
* :class:`AuthenticationError`, :class:`ConnectError` and
  :class:`PermissionDenied` are configuration problems and also
  :class:`~dialer.errors.UserError`, so the command line prints them as one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialer.errors import UserError

if TYPE_CHECKING:
    from dialer.ami.codec.message import Message


#: What Asterisk answers to every action, logins included, once a stop has begun.
SHUTTING_DOWN = "Asterisk is shutting down"


class AMIError(Exception):
    """Base class of the AMI client's errors."""


class ConnectError(AMIError, UserError):
    """The TCP/TLS connection could not be made, or the peer does not speak AMI."""


class AuthenticationError(AMIError, UserError):
    """Login was refused (wrong user name or secret). The client does not retry."""


class NotConnected(AMIError):
    """There is no connection right now; nothing was sent."""


class ConnectionLost(AMIError):
    """The connection dropped while the action was in flight; it may have run."""


class ActionTimeout(AMIError, TimeoutError):
    """No answer within the action's deadline.

    ``sent`` tells whether the action had been written to the connection
    (then it may have run) or was still waiting for its turn (it was not sent).
    """

    def __init__(self, text: str, *, sent: bool = True) -> None:
        super().__init__(text)
        self.sent = sent


class AMIActionError(AMIError):
    """Asterisk answered ``Response: Error``.

    ``action`` is the action's name, ``response`` the whole answer and
    ``reason`` its ``Message:`` text.
    """

    def __init__(self, text: str, *, action: str, response: "Message") -> None:
        super().__init__(text)
        self.action = action
        self.response = response
        self.reason = response.get("Message") or ""


class PermissionDenied(AMIActionError, UserError):
    """``Message: Permission denied``: the AMI user lacks the write class for this action."""
