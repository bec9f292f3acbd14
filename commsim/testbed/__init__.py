"""A loopback testbed: the patterns on a real HTTP server with real clients.

``commsim testbed CONFIG`` runs request-response, short polling, long
polling, SSE and WebSocket push (``push``) on an aiohttp server in its own
process, with up to a few thousand aiohttp clients in one asyncio process,
all on 127.0.0.1, and writes the same runs.csv/summary.csv columns as
``commsim run``.  Modules: :mod:`~commsim.testbed.server` (the server
process), :mod:`~commsim.testbed.client` (clients and the counting relay),
:mod:`~commsim.testbed.run` (runs, bounds, clean-up, result files),
:mod:`~commsim.testbed.calibrate` (fits the simulator's parameters).

Needs the optional extra ``commsim[testbed]`` (aiohttp).  ``commsim run``
never imports this package.
"""


def require_aiohttp() -> None:
    from commsim.errors import ConfigError
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise ConfigError("testbed", "needs aiohttp: pip install 'commsim[testbed]'") from None
