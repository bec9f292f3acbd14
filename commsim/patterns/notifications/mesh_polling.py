"""Short and long polling behind a topology with sidecar proxies (``topology.sidecar: sidecar``).

The mesh ingress (:class:`commsim.nodes.mesh_ingress.MeshIngress`) in front
of instances that each have a sidecar; model and assumptions as for
request_response (docs/topologies.md, "Sidecar proxies inside a topology"),
with what a poll is:

* The client's kept-alive connection ends at the ingress: a crash resets no
  client connection (``crash_resets`` counts the tries a crash reset).
  Each poll is routed on its own (a try per pick), crosses the instance's
  proxy and loopback both ways, and takes what is pending for the client
  when it reaches the application (updates live outside the instances).
* A try that fails (its instance crashed with it, or the per-try
  ``sidecar.timeout`` expired) gives the updates it had taken back to the
  client's pending list (a try timed out before it reached the application
  is cancelled there, as Envoy resets the upstream request; its late answer,
  if any, is dropped at the ingress, so nothing is delivered twice); the ingress retries the poll on another instance
  (``sidecar.retries``, full-jitter ``backoff``).  When the tries are
  exhausted or no instance is up the ingress answers ``503`` (an ``error``
  message, not a poll response: it is not in ``poll_rtt_mean``) and the
  client simply polls again at its next interval: nothing is missed.
* ``poll_rtt_mean`` includes the mesh's time (proxy legs, loopback, mTLS
  waits, retries); ``hop_added_*`` is that time alone.
"""

from __future__ import annotations

from commsim.engine.simulation import call_later
from commsim.metrics.collect import ledger_metrics
from commsim.nodes.mesh_ingress import MeshIngress
from commsim.patterns.notifications.clustered import _ClusterParts


class _AppCpu:
    """``self.cpu`` while the base's ``_server_poll`` runs for a try: its work
    (service, per-kind costs) is the base's; the job runs on the instance."""

    __slots__ = ("model", "att")

    def __init__(self, model):
        self.model = model
        self.att = None

    def submit(self, work, purpose, done, token=None, wasted=False) -> None:
        att = self.att
        att.token = (done, token)
        att.srv.cpu.submit(work, purpose, self.model._served, att, wasted)


class MeshPolling(_ClusterParts):
    """Mixin over :class:`.ShortPolling` (see the module docstring)."""

    def __init__(self, sim):
        super().__init__(sim)
        self._app = _AppCpu(self)
        self.ingress = MeshIngress(sim, sim.config["sidecar"], None, self._app_in, self._answer,
                                   self._refuse, lost=self._try_lost)
        self._on_add = self.ingress.attach
        self._build_cluster()
        self.ingress.lb = self.cluster.lb

    def _server_poll(self, msg) -> None:
        """A poll reached the ingress."""
        self.ingress.request(msg.src, msg, msg.header, 0)

    def _app_in(self, att) -> None:
        if not att.live:
            return  # timed out before it reached the application: cancelled
        self._app.att = att
        cpu = self.cpu
        self.cpu = self._app
        try:
            super()._server_poll(att.req.data)
        finally:
            self.cpu = cpu

    def _served(self, att, _wait) -> None:
        if self.ingress.current(att):
            token = att.token[1] if att.token is not None else None
            size = sum(token[1][1::3]) if isinstance(token, tuple) and token[1] else 0
            self.ingress.served(att, self.response_header, size)

    def _answer(self, _req, att) -> None:
        done, token = att.token
        done(token, 0.0)

    def _try_lost(self, att) -> None:
        """A failed try: the updates it had taken go back to pending."""
        t = att.token
        if t is not None and isinstance(t[1], tuple) and t[1][1]:
            c, items = t[1][0], t[1][1]
            p = self.pending[c]
            self.pending[c] = list(items) + p if p else list(items)
        att.token = None

    def _refuse(self, req) -> None:
        """503: the client polls again at its next interval."""
        from commsim.network import Message
        from commsim.patterns.notifications.base import SERVER

        msg = req.data
        self.down.send(Message("error", SERVER, msg.src, self.response_header, 0, 0, 0,
                               self.env.now, None, "503"), self._client_refused)

    def _client_refused(self, msg) -> None:
        if self.handshakes:
            self.connector.done(msg.dst)

    def _server_crashed(self, s) -> None:
        self.ingress.crashed(s)
        s.cpu.drop_queued()

    def metrics(self) -> dict:
        out = super().metrics()
        out.update(self.ingress.metrics())
        out.update(ledger_metrics(self.sim, self.net.in_flight() + self.ingress.in_flight()))
        return out


class MeshLongPolling(MeshPolling):
    """Mixin over :class:`.LongPolling`: as :class:`MeshPolling`, with what
    a held poll is.

    * A long poll is one request through the ingress; the instance its try
      reached holds it (``long_polling.timeout``) and answers it there.
    * A crash of that instance fails the try: the hold is gone with it, the
      updates an answer in its CPU had taken go back to pending, and the
      ingress retries the poll on a survivor, where it is held again.  The
      client sees nothing of it (no reset, no re-poll): ``crash_resets``
      counts the tries, ``reconnects`` stays 0.
    * A per-try ``sidecar.timeout`` shorter than the hold cancels the hold
      (Envoy resets the upstream request) and retries it: set it above
      ``long_polling.timeout`` (or leave it null) unless that is the point.
    * A 503 (tries exhausted, nothing up): the client re-polls after
      ``topology.reconnect_backoff``.
    """

    def __init__(self, sim):
        super().__init__(sim)
        self.try_of: list = [None] * self.n

    def _app_in(self, att) -> None:
        if not att.live:
            return  # timed out before it reached the application: cancelled
        self.try_of[att.req.key] = att
        super(MeshPolling, self)._server_poll(att.req.data)  # the base's hold-or-answer

    def _respond(self, c: int, items, purpose: str = "poll") -> None:
        att = self.try_of[c]
        if att is None or not att.live or not self.ingress.current(att):
            if items:  # no try to answer on any more: the updates stay pending
                p = self.pending[c]
                self.pending[c] = list(items) + p if p else list(items)
            return
        self._app.att = att
        cpu = self.cpu
        self.cpu = self._app
        try:
            super()._respond(c, items, purpose)
        finally:
            self.cpu = cpu

    def _try_lost(self, att) -> None:
        c = att.req.key
        if self.try_of[c] is att:
            self.try_of[c] = None
            if self.held[c]:
                self.held[c] = 0
                self._conn(-1)
        super()._try_lost(att)

    def _client_refused(self, msg) -> None:
        c = msg.dst
        super()._client_refused(msg)
        self.outstanding[c] = 0
        if self.online[c]:
            call_later(self.env, self._t["reconnect_backoff"], self._repoll, c)

    def _repoll(self, event) -> None:
        c = event.value
        if self.online[c] and not self.outstanding[c]:
            self._send_poll(c)
