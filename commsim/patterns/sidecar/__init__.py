"""The sidecar proxy of a service mesh (``pattern: sidecar``).

"What does a service-mesh sidecar cost per hop, and what does it buy?"

Model and assumptions
---------------------
* A call chain of ``sidecar.depth`` services (0 calls 1 calls 2 ...), each
  with ``sidecar.instances`` instances.  An instance's application is a
  :class:`~commsim.nodes.Cpu` with ``sidecar.app_cores`` cores; serving a
  request costs ``server.service_time`` of it (times ``fault_slowdown`` on a
  faulty instance), after which an instance of service k < depth - 1 makes
  ``fan_out`` parallel calls to service k + 1 and answers when all are
  back (an error if any failed).  The clients
  (:class:`~commsim.clients.ClientPopulation`) call service 0 from one
  client node, which is an instance like the others (with its own sidecar
  in sidecar mode, as in Istio's benchmark); its own application CPU is
  not modelled (64 cores, used only by the library in library mode).
* Instances talk over one link per ordered pair of nodes with
  ``network.latency``, ``network.bandwidth`` (the capacity of that hop, each
  direction) and ``network.loss`` (retransmitted after ``network.rto``, up to
  ``network.max_retries`` times; a message dropped beyond that fails its try,
  which is retried like an error; a dropped handshake flight is resent).
  The app <-> proxy loopback legs have ``loopback_latency`` only (no loss,
  no bandwidth limit).  A call is a request of ``request_size`` bytes and a
  response of ``response_size`` bytes.
* ``network.handshake`` and ``network.keepalive`` are refused: connections
  here are set up by the mesh (``mtls``: TLS 1.3 between the meshes;
  ``requests_per_connection``), or are persistent and already open.
* ``mode: none``: the application calls the upstream directly; the caller
  spreads calls with ``lb_policy``; no encryption, no retries, no timeouts,
  no circuit breaking; connections are persistent and already open.
* ``mode: sidecar``: every instance has a
  :class:`~commsim.nodes.proxy.SidecarProxy`; a call goes app -> loopback ->
  caller's proxy -> network -> callee's proxy -> loopback -> app and back,
  i.e. four proxy legs and four loopback crossings.  The *caller's* proxy
  does load balancing, per-try timeouts, retries with back-off and circuit
  breaking; both proxies do mutual TLS.
* ``mode: library``: the same features run in-process (like gRPC with a
  resilience and TLS library): no loopback and no proxy queue; each leg
  costs ``library_cpu / 2`` plus the mTLS CPU on the application's own CPU.
* Mutual TLS (``mtls``): ``mtls_cpu`` per request at each end (half per
  leg) for record encryption, and a TLS 1.3 handshake (TCP + TLS flights of
  :mod:`commsim.network.connection`, sent over the links) with
  ``mtls_handshake_cpu`` at each end whenever a caller opens a connection
  to an upstream instance: once, or every ``requests_per_connection``
  requests.  Requests arriving while a connection is being opened wait for it.
* Retries: a try fails on an error answer or when ``timeout`` expires (the
  late answer is then dropped at the caller, but the upstream still does the
  work: retry amplification).  Up to ``retries`` retries, the k-th after a
  random back-off uniform in [0, backoff x 2^k] ("full jitter"), each to a
  balancer pick (usually another instance).
* Circuit breaking (Envoy's outlier detection): after ``breaker_errors``
  consecutive failures from an instance, the caller ejects it for
  ``breaker_open``; when that ends the instance is tried again and one more
  failure ejects it again (half-open).  If every instance is ejected the
  balancer ignores the ejections (Envoy's panic threshold).
* Faults: the first ``fault_instances`` instances of service
  ``fault_service`` fail a fraction ``fault_error_rate`` of their requests
  (after doing the work) and/or run ``fault_slowdown`` times slower.

Metrics: end-to-end latency; the latency the mesh adds to each call (its
total time minus the callee's own time and the network transit of its final
try, so exactly 0 in mode none); proxy and mesh CPU per 1000 requests per
second; success rate; retry amplification (tries per call).

At low load two proxies per call add 2 x (proxy CPU per request + 2 x
loopback latency) + the mTLS CPU to the mean call time
(:func:`commsim.theory.sidecar_added_latency`).

Records (``--records``): one row per client call, end to end (kind call),
and one per try of any call in the mesh (kind try); outcome ok or error
(``records``).

Package layout: ``config`` (the ``sidecar`` section), ``parts``, ``model``, ``records``.
The retry policy, the circuit breaker and mutual TLS (handshake, pooled
connections) are the shared mesh parts of :mod:`commsim.nodes.mesh`, the
proxy is :class:`commsim.nodes.proxy.SidecarProxy` (both also used by
``topology.sidecar``).
"""

from __future__ import annotations

from pathlib import Path

from commsim.errors import ConfigError
from commsim.network.connection import check_idle_timeout
from commsim.patterns.base import CLIENT_QUEUE, CLIENT_QUEUE_WHY, WIRE_COUNTED, Pattern, ignoring
from commsim.patterns.sidecar.config import SECTION  # noqa: F401  (registers the section)
from commsim.patterns.sidecar.model import SidecarModel


def figures(result, out_dir) -> list:
    from commsim.figures.topology import sidecar_figures

    return sidecar_figures(result, Path(out_dir))


def _check_network(cfg: dict) -> None:
    net = cfg["network"]
    check_idle_timeout(cfg, _IDLE_REFUSED)
    if net["handshake"] != "none":
        raise ConfigError("network.handshake", f"got {net['handshake']!r}; the sidecar pattern sets "
                          "up its connections with sidecar.mtls (a TLS 1.3 handshake between the "
                          "meshes) and sidecar.requests_per_connection: use none")
    if not net["keepalive"]:
        raise ConfigError("network.keepalive", "got false; in the sidecar pattern a new connection "
                          "per request is sidecar.requests_per_connection: 1 (with sidecar.mtls)")


_IDLE_REFUSED = ("the meshes' connections are sidecar.mtls and sidecar.requests_per_connection; "
                 "an idle close is not modelled there")

PATTERN = Pattern(
    name="sidecar",
    summary="service-mesh sidecar proxies vs an in-process library vs nothing: per-hop latency, "
            "proxy CPU, mTLS, retries, circuit breaking under faulty instances",
    model=SidecarModel,
    sections=("sidecar",),
    figures=figures,
    ignores={**ignoring(CLIENT_QUEUE, CLIENT_QUEUE_WHY),
             "server.cores": "each instance's application has sidecar.app_cores cores",
             "network.tls_server_cpu": "the meshes' TLS handshakes cost sidecar.mtls_handshake_cpu "
                                       "at each end"},
    check=_check_network, network={
        "latency": "every node-to-node hop; app <-> proxy loopback legs use "
                   "sidecar.loopback_latency",
        "bandwidth": "each node-to-node hop, each direction (loopback legs unlimited)",
        "loss": "node-to-node hops: resent after rto; a message given up after max_retries fails "
                "its try (the retry policy decides); a dropped handshake flight is resent",
        "connections": "refused: connections are sidecar.mtls (TLS 1.3 between meshes) and "
                       "sidecar.requests_per_connection",
        "idle_close": "refused: " + _IDLE_REFUSED,
        "wire": WIRE_COUNTED})
