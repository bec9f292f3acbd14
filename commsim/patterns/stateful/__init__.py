"""Stateful vs stateless servers behind a load balancer (``pattern: stateful``).

"If I keep session state in the server, what do I gain in latency and what
do I lose when a server dies or when I scale out?"

Model and assumptions
---------------------
* Topology: clients -- ``network`` links -- a load balancer -- one link
  pair per server (``stateful.backend_latency``) -- ``stateful.servers``
  application servers.  It is the shared composition,
  :class:`~commsim.nodes.cluster.Cluster`, built from the ``stateful`` keys
  (``servers``, ``balancer``, ``crash_at``/``crash_server``,
  ``mtbf``/``mttr``, ``scale_out_at``/``scale_out_servers``; fault streams
  ``stateful/mtbf``, ``stateful/mttr``): each server a
  :class:`~commsim.nodes.cluster.Server` (a :class:`~commsim.nodes.Cpu`
  with ``server.cores`` cores that crashes and restarts) extended by
  :class:`~commsim.patterns.stateful.servers.StatefulServer` (session
  memory, its backend hop, the health-check delay).  The balancer has no
  CPU and never fails.
* Network: every hop is built by :func:`~commsim.network.network_link`.
  Client <-> balancer applies the whole ``network`` section (latency,
  bandwidth, loss); balancer <-> server and server <-> store are datacentre
  hops configured explicitly (``backend_latency``, ``store_latency``; no
  bandwidth limit, no loss).  A lost message is retransmitted after
  ``network.rto`` (its latency and bytes grow); one the link gives up on
  (after ``network.max_retries``) fails its operation, which the client
  sees when its last retransmission timer expires (no retry of the
  operation: it counts in ``failed_requests``; a login whose answer is lost
  leaves a session behind on the server, a logout whose answer is lost
  costs a relogin later).
* Connections (``network.handshake`` other than ``none``): per client
  connection through :class:`~commsim.network.connection.Connections`,
  with an L4 balancer that picks a server per connection, TLS at the server
  (``tls_server_cpu`` on its CPU) and every request of the connection sent
  there; ``keepalive: false`` opens one per operation.  Details and
  failures in :mod:`commsim.patterns.stateful.connect`.  With ``none``
  connections are not modelled and each request is routed by the policy.
  ``network.idle_timeout``: the server closes a kept-alive connection idle
  (no operation outstanding) for that long; the client's next operation
  connects again (a new handshake and a new balancer pick).
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

Records (``--records``): one row per operation (kinds request, login,
relogin; outcomes ok, reset, 503, 401, lost, unfinished), see ``records``.

Package layout: ``config`` (the ``stateful`` section), ``servers``, ``connect``, ``model``,
``records``.
"""

from __future__ import annotations

from pathlib import Path

from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import CLIENT_QUEUE, CLIENT_QUEUE_WHY, IDLE_CLOSE, WIRE_COUNTED, Pattern, ignoring
from commsim.patterns.stateful.config import SECTION  # noqa: F401  (registers the section)
from commsim.patterns.stateful.model import StatefulModel


# ------------------------------------------------------------------ figures --
def figures(result, out_dir) -> list:
    """Latency and imbalance over time through the faults of each sweep point
    (replication 0's time series, recorded during its run), and summary bars."""
    from commsim.figures.topology import stateful_figures

    return stateful_figures(result, Path(out_dir), StatefulModel)


def _check_network(cfg: dict) -> None:
    check_idle_timeout(cfg)  # network.idle_timeout needs a handshake and keep-alive


PATTERN = Pattern(
    name="stateful",
    summary="stateful vs stateless servers behind a load balancer: sessions, crashes, scale-out",
    model=StatefulModel,
    sections=("stateful",),
    figures=figures,
    ignores=ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY),
    check=_check_network, network={
        "latency": "client <-> balancer (every message, handshake flights too); balancer <-> "
                   "server and server <-> store are datacentre hops with stateful.backend_latency "
                   "and stateful.store_latency (no bandwidth limit, no loss)",
        "bandwidth": "the balancer's access link (client <-> balancer), each direction",
        "loss": "client <-> balancer: a lost message is retransmitted after rto (latency and "
                "bytes grow); one given up on after max_retries fails its operation (a lost "
                "handshake flight is sent again)",
        "connections": "client <-> balancer, L4: the balancer picks a server per connection and "
                       "TLS terminates there (tls_server_cpu on that server); every request on "
                       "the connection goes to it; keepalive: one connection per client, else "
                       "one per operation; with handshake none connections are not modelled and "
                       "every request is routed by the policy",
        "idle_close": IDLE_CLOSE,
        "wire": WIRE_COUNTED})
