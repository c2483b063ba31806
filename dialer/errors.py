"""Errors that reach the user as one clear line.

Anything raised as a :class:`UserError` is printed by the command line as
``dialer: <message>`` with a non-zero exit status and no traceback (unless
``--debug``). The message must name the place at fault: the file and line,
the setting, the command-line option or the AMI server.
"""


class UserError(Exception):
    """A problem the user can fix: bad input, bad configuration, refused login."""

    exit_status = 1
