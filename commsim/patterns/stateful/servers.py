"""Parts of the stateful model: a cluster instance with session memory, an operation."""

from __future__ import annotations

from commsim.engine.events import call_later
from commsim.network import network_link
from commsim.nodes.cluster import Server


class StatefulServer(Server):
    """A :class:`~commsim.nodes.cluster.Server` (CPU, crashes and restarts from
    the cluster's fault plan, what the balancer routes by) with what the
    stateful pattern adds:

    * session memory (``sessions``: client -> session id) and the operations
      it holds (``inflight``, ordered: lost at a crash);
    * its own hop to the balancer (``stateful.backend_latency``, a datacentre
      hop built by :func:`~commsim.network.network_link` with that latency
      only: no bandwidth limit, no loss);
    * a **health-check delay**: the balancer's view (``routable``) follows a
      crash or a restart ``stateful.detect_time`` later, not at once, so
      requests routed to a dead server meanwhile fail fast;
    * requests served per time bin (figures).
    """

    __slots__ = ("model", "name", "sessions", "inflight", "link_in", "link_out", "created",
                 "served")

    def __init__(self, model, sim, index: int, cores: int, plan, crashed, cpu=None):
        self.model = model
        self.name = f"server{index}"
        super().__init__(sim, index, cores, plan, crashed, cpu)
        self.sessions: dict = {}
        self.inflight: dict = {}  # ordered (a set of ops would iterate in id() order)
        lat = {"latency": sim.config["stateful"]["backend_latency"]}
        self.link_in = network_link(sim, f"lb/{self.name}/in", lat)
        self.link_out = network_link(sim, f"lb/{self.name}/out", lat)
        self.created = sim.now
        self.served = [0] * model.nbins

    def on_crash(self) -> None:
        self._crashed(self)  # the cluster's hook, then the model's (StatefulModel.crashed)
        call_later(self.model.env, self.model.detect_time, self._detected, (self.epoch, False))

    def on_restart(self) -> None:
        self.model.restarted(self)
        call_later(self.model.env, self.model.detect_time, self._detected, (self.epoch, True))

    def _detected(self, event) -> None:
        epoch, up = event.value
        if self.epoch == epoch:  # no crash or restart since
            self.routable = up


class Op:
    """One client operation: optional login, then one request."""

    __slots__ = ("cid", "done", "t0", "service", "kind", "forced", "server", "epoch", "last",
                 "during_crash", "sid", "conn")

    def __init__(self, cid, done, t0, service, during_crash):
        self.cid = cid
        self.done = done
        self.t0 = t0
        self.service = service
        self.kind = "request"
        self.forced = False
        self.server = None
        self.epoch = 0
        self.last = False
        self.during_crash = during_crash
        self.sid = None
        self.conn = None
