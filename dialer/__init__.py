"""dialer: a rate-limited predictive dialing orchestrator for Asterisk."""

__version__ = "0.1.0"
