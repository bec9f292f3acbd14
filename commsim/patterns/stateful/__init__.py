"""Stateful vs stateless servers behind a load balancer (``pattern: stateful``).

"If I keep session state in the server, what do I gain in latency and what
do I lose when a server dies or when I scale out?"

Model and assumptions
---------------------
* Topology: clients -- ``network`` links -- a load balancer
  (:class:`~commsim.nodes.load_balancer.LoadBalancer`) -- one link pair per
  server (``stateful.backend_latency``) -- ``stateful.servers`` application
  servers, each a :class:`~commsim.nodes.Cpu` with ``server.cores`` cores.
  The balancer has no CPU and never fails.
* Clients (:class:`~commsim.clients.ClientPopulation`, sync or async) work in
  *sessions*: a login (``stateful.login_cpu`` of server CPU, e.g. checking a
  password hash), then a geometric number of requests with mean
  ``stateful.requests_per_session``, each ``server.service_time`` of CPU; the
  last request of a session logs out.  An operation is one request; when the
  client has no session the operation starts with the login, so login time
  is part of that operation's latency.
* ``stateful.mode: stateful``: the session lives in the memory of the server
  that ran the login.  A request reaching a server without the client's
  session is answered 401 and the client logs in again there (a *relogin*)
  and resends; if the resent request is again misrouted the operation fails.
  Only one copy of a session is live: logging in elsewhere drops the old one
  (it would expire).  Routing must be sticky (``sticky`` or
  ``consistent_hash``) for this to work; ``round_robin`` and
  ``least_connections`` show what happens when it is not.
* ``stateful.mode: stateless``: any server can serve any request.  With
  ``stateless_state: store`` the session lives in a shared
  :class:`~commsim.nodes.store.Store` (written at login, read on every
  request: one store round trip of ``2 x store_latency`` plus the store's
  queueing and ``store_service_time``; logout deletes it, without waiting).
  With ``stateless_state: token`` the state travels with every request as a
  signed token of ``token_size`` bytes, signed at login
  (``token_sign_cpu``) and verified on every request (``token_verify_cpu``).
* Faults: a server crashes at ``crash_at`` (server ``crash_server``) and/or
  every server fails after exponential up-times of mean ``mtbf``; it
  restarts after ``mttr`` (null: never) with empty memory.  At the crash
  its queued and running requests are lost: each gets a connection reset and
  the operation fails; in stateful mode its sessions are lost
  (``sessions_lost``) and their clients pay a relogin on their next
  request.  The balancer notices a crash (and a restart) ``detect_time``
  later (health checks); until then it keeps routing to the dead server and
  those requests fail fast (connection refused).
* Scale-out: at ``scale_out_at``, ``scale_out_servers`` new servers join
  the balancer, empty.  Sticky sessions keep existing clients where they
  are (the affinity cookie lasts one session; new sessions are placed round
  robin), so the new servers only get new sessions and load stays uneven for
  about a session length; consistent hashing moves ~1/N of the clients at
  once (in stateful mode: ~1/N of the sessions missed and relogged).
* Clients should be ``sync`` (one operation at a time per client, as a user
  in a browser); with ``async`` clients two operations of one client may
  overlap and both log in.
* Common random numbers: each operation draws its service time (and each
  login its CPU and session length) from its own named stream when it
  starts, so compared modes see the same work in the same order.

With no faults, zero store latency and zero store service time, the store
round trip takes no time and both modes give identical latencies (a test).

Package layout: ``config`` (the ``stateful`` section), ``servers``, ``model``.
"""

from __future__ import annotations

from pathlib import Path

from commsim.errors import ConfigError
from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import WIRE_COUNTED, Pattern
from commsim.patterns.stateful.config import SECTION  # noqa: F401  (registers the section)
from commsim.patterns.stateful.model import StatefulModel


# ------------------------------------------------------------------ figures --
def figures(result, out_dir) -> list:
    """Latency and imbalance over time through the faults of each sweep point
    (replication 0 re-run to get its time series), and summary bars."""
    from commsim.figures.topology import stateful_figures

    return stateful_figures(result, Path(out_dir), StatefulModel)


def _check_network(cfg: dict) -> None:
    check_idle_timeout(cfg, _IDLE_REFUSED)
    if cfg["network"]["loss"] > 0:
        raise ConfigError("network.loss", f"got {cfg['network']['loss']!r}; the stateful pattern "
                          "does not model lost messages (a request given up on by the link would "
                          "block its client): use 0")
    if cfg["network"]["handshake"] != "none":
        raise ConfigError("network.handshake", f"got {cfg['network']['handshake']!r}; the stateful "
                          "pattern's clients hold persistent connections to the load balancer "
                          "whose set-up is not modelled: use none")
    if not cfg["network"]["keepalive"]:
        raise ConfigError("network.keepalive", "got false; the stateful pattern's clients hold "
                          "persistent connections to the load balancer (a connection per request "
                          "is not modelled): use true")


_IDLE_REFUSED = ("the clients' persistent connections to the balancer are not set up through "
                 "the connection module here")

PATTERN = Pattern(
    name="stateful",
    summary="stateful vs stateless servers behind a load balancer: sessions, crashes, scale-out",
    model=StatefulModel,
    sections=("stateful",),
    figures=figures,
    check=_check_network, network={
        "latency": "client <-> balancer; balancer <-> server and server <-> store use "
                   "stateful.backend_latency and stateful.store_latency",
        "bandwidth": "the servers' access link",
        "loss": "refused: lost requests and their retries are not modelled in this pattern",
        "connections": "refused (handshake, keepalive: false): set-up to the balancer is not "
                       "modelled",
        "idle_close": "refused: " + _IDLE_REFUSED,
        "wire": WIRE_COUNTED})
