"""Errors that commsim reports to users.

A :class:`ConfigError` names the YAML key path, the offending value and what
is allowed.  The command line prints it as one line and exits with status 2,
before anything is written.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A problem with an experiment configuration.

    Parameters
    ----------
    key:
        Dotted path of the YAML key, e.g. ``"network.latency"``.
    message:
        What is wrong and what is allowed, e.g.
        ``"got '20 parsecs'; expected a duration such as 250us, 20ms, 1.5s, 2min"``.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


def describe(value) -> str:
    """Render a user's value compactly for an error message."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."
