"""Parts of the stateful model: servers."""

from __future__ import annotations

from commsim.network import Link
from commsim.nodes import Cpu
from commsim.nodes.faults import Crashable


class _Server(Crashable):
    """One server instance; ``up``/``epoch`` and its crash schedule come from
    :class:`~commsim.nodes.faults.Crashable` (the model's shared fault plan)."""

    __slots__ = ("model", "index", "name", "cpu", "routable", "active", "sessions",
                 "inflight", "link_in", "link_out", "created", "served")

    def __init__(self, model, index: int):
        sim = model.sim
        self.model = model
        self.index = index
        self.name = f"server{index}"
        self.cpu = Cpu(sim, self.name, sim.config["server"]["cores"])
        self.init_faults(model.faults, arm=False)
        self.routable = True
        self.active = 0
        self.sessions: dict = {}
        self.inflight: dict = {}  # ordered (a set of ops would iterate in id() order)
        lat = sim.config["stateful"]["backend_latency"]
        self.link_in = Link(sim, f"lb/{self.name}/in", lat)
        self.link_out = Link(sim, f"lb/{self.name}/out", lat)
        self.created = sim.now
        self.served = [0] * model.nbins

    def on_crash(self) -> None:
        self.model.crashed(self)

    def on_restart(self) -> None:
        self.model.restarted(self)


class _Op:
    """One client operation: optional login, then one request."""

    __slots__ = ("cid", "done", "t0", "service", "kind", "forced", "server", "epoch", "last",
                 "during_crash", "in_window", "sid")

    def __init__(self, cid, done, t0, service, during_crash, in_window):
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
        self.in_window = in_window
        self.sid = None
