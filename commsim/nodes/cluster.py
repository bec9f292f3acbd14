"""Composition: N server instances behind a load balancer, with crashes and scale-out.

The ``topology`` section (registered here, shared by the client-server
patterns) turns a pattern's one server into a *cluster*:

* ``topology.servers`` instances, each a :class:`Server`: its own
  :class:`~commsim.nodes.Cpu` (``server.cores`` cores, ``server.service_time``
  per message), a :class:`~commsim.nodes.faults.Crashable` (the one crash and
  restart mechanism, epoch guard included);
* one :class:`~commsim.nodes.load_balancer.LoadBalancer` (the existing
  policies) in front of them, keyed by the client id;
* scheduled crashes (``crash_at`` of ``crash_server``), random crashes
  (``mtbf``/``mttr`` for every instance, a :class:`FaultPlan` on stream
  ``topology/faults``) and a scale-out (``scale_out_servers`` empty
  instances join at ``scale_out_at``).

Model and assumptions (every composed pattern)
----------------------------------------------
* The client <-> balancer hop is the pattern's ``network`` link pair (the
  one link factory: latency, bandwidth, loss, handshakes); the balancer <->
  server hop is inside the datacentre and is not modelled (zero latency, no
  loss, no bandwidth limit).  The balancer has no CPU and never fails.
* The balancer is an L4 pass-through: TLS terminates at the server, so a
  (re)connect's handshake costs ``network.tls_server_cpu`` on the instance
  the balancer picked for it.  The pick is made when the client starts to
  connect (the SYN's one-way trip to the balancer is not modelled apart).
* The balancer learns of a crash at once (its connections to the instance
  are reset) and of a restart at once; a restarted instance comes back
  empty and takes new connections by policy; nothing is moved back to it.
* A default ``topology`` (one server, no crashes, no scale-out) builds no
  cluster at all: the pattern runs exactly as without the section.

Sidecar proxies (``topology.sidecar: sidecar``): a
:class:`~commsim.nodes.proxy.SidecarProxy` beside every instance and the
balancer acting as the mesh ingress (retries, circuit breaking, mTLS to the
proxies; :mod:`commsim.nodes.mesh`), configured from the ``sidecar``
section's proxy keys; built for the patterns in :data:`MESH` (the ingress is
:class:`commsim.nodes.mesh_ingress.MeshIngress`, attached with
``Cluster(on_add=ingress.attach)``; see
:mod:`commsim.patterns.request_response_mesh` and docs/topologies.md), refused
for the others by :func:`check_sidecar`.
"""

from __future__ import annotations

from commsim.config.schema import Field, Section, register_section
from commsim.engine.events import call_at
from commsim.errors import ConfigError
from commsim.nodes.cpu import Cpu
from commsim.nodes.faults import Crashable, FaultPlan
from commsim.nodes.load_balancer import POLICIES, LoadBalancer

#: Patterns composed behind a topology (the others refuse non-default keys).
COMPOSED = ("request_response", "sse", "push", "short_polling", "long_polling", "sync_async",
            "websocket")
#: Composed patterns that can run with topology.sidecar: sidecar (the others refuse it).
MESH = ("request_response", "short_polling", "long_polling", "sse", "push")


def _check(sec: dict, key: str) -> None:
    if sec["crash_at"] and sec["crash_server"] >= sec["servers"]:
        raise ConfigError(f"{key}.crash_server", f"got {sec['crash_server']}; must be < "
                          f"{key}.servers ({sec['servers']})")
    if sec["mttr"] is not None and not sec["crash_at"] and sec["mtbf"] is None:
        raise ConfigError(f"{key}.mttr", "set, but nothing crashes (no crash_at, no mtbf): "
                          "it would have no effect")


SECTION = register_section(Section("topology", {
    "servers": Field("int", 1, "server instances behind the load balancer (1 and no crashes: "
                     "no balancer, the pattern as without this section)", min=1),
    "balancer": Field("choice", "round_robin", "load-balancing policy, applied per (re)connect "
                      "keyed by the client", choices=POLICIES),
    "crash_at": Field("list:duration", None, "times (absolute simulated time, warm-up "
                      "included) at which crash_server crashes", min=0, nullable=True),
    "crash_server": Field("int", 0, "index of the instance crash_at crashes", min=0),
    "mtbf": Field("dist:duration", None, "up-time between random crashes of every instance (a "
                  "bare value: exponential with that mean; null: none)", min=0,
                  min_exclusive=True, nullable=True),
    "mttr": Field("dist:duration", None, "time a crashed instance takes to restart, empty "
                  "(null: never)", min=0, nullable=True),
    "scale_out_at": Field("duration", None, "time at which scale_out_servers new instances join "
                          "(null: never)", min=0, nullable=True),
    "scale_out_servers": Field("int", 1, "instances added at scale_out_at", min=1),
    "reconnect_jitter": Field("duration", "0s", "after a crash resets its connection a client "
                              "waits a uniform [0, jitter] more before reconnecting (0: all at "
                              "once)", min=0),
    "reconnect_backoff": Field("duration", "1s", "wait before retrying when no instance is up, "
                               "doubled at each failed try (up to 64x)", min=0,
                               min_exclusive=True),
    "timeseries_bin": Field("duration", "1s", "bin of the cluster's time series (reconnects, TLS "
                            "CPU, update latency) and of the *_peak metrics", min=0,
                            min_exclusive=True),
    "storm_window": Field("duration", "10s", "latency_storm_* cover updates created this long "
                          "after the first crash in the window", min=0, min_exclusive=True),
    "sidecar": Field("choice", "none", "sidecar: a proxy beside each instance, the balancer "
                     "as mesh ingress (retries, circuit breaking, mTLS; keys in the sidecar "
                     "section; built for " + ", ".join(MESH) + ")", choices=("none", "sidecar")),
}, doc="N server instances behind a load balancer, crashes (scheduled, MTBF/MTTR) and a "
       "scale-out; composed patterns: " + ", ".join(COMPOSED) + ".", check=_check))


def active(cfg: dict) -> bool:
    """Whether the config asks for a cluster (anything but the default)."""
    t = cfg.get("topology")
    if not t:
        return False
    return (t["servers"] > 1 or bool(t["crash_at"]) or t["mtbf"] is not None
            or t["scale_out_at"] is not None or t["sidecar"] != "none")


def refuse(cfg: dict, why: str) -> None:
    """For a pattern not composed yet: refuse any non-default topology."""
    if active(cfg) and cfg["topology"]["sidecar"] != "none":
        check_sidecar(cfg)
    if active(cfg):
        raise ConfigError("topology", f"{cfg['pattern']} cannot run behind a topology yet "
                          f"({why}); composed patterns: {', '.join(COMPOSED)}. Remove the "
                          "section or keep servers: 1 without crashes or scale-out")


class Server(Crashable):
    """One instance: a CPU that can crash; what the balancer needs to route."""

    __slots__ = ("index", "cpu", "routable", "active", "_crashed", "proxy")

    def __init__(self, sim, index: int, cores: int, plan: FaultPlan | None, crashed,
                 cpu: Cpu | None = None):
        self.index = index
        self.cpu = cpu if cpu is not None else Cpu(sim, f"server{index}", cores)
        self.routable = True
        self.active = 0   # clients assigned (connecting or connected)
        self.proxy = None  # its SidecarProxy with topology.sidecar (nodes/proxy.py)
        self._crashed = crashed
        self.init_faults(plan)

    def on_crash(self) -> None:
        self.routable = False
        self._crashed(self)

    def on_restart(self) -> None:
        self.routable = True
        self.active = 0


class Cluster:
    """The instances and the balancer of one run (see the module docstring).

    ``on_crash(server)`` is the pattern's hook, run at a crash after the
    server went down (it resets the connections the instance held and
    handles the work its CPU loses: :meth:`Cpu.drop_queued` tokens).

    Optional, for a pattern whose own section describes the cluster
    (``pattern: stateful``): ``section`` replaces ``topology`` (a mapping
    with its keys ``servers``, ``balancer``, ``crash_at`` (a list or None),
    ``crash_server``, ``mtbf``, ``mttr``, ``scale_out_at``,
    ``scale_out_servers``); ``fault_stream`` names the fault plan's streams
    (``<fault_stream>/mtbf``, ``/mttr``); ``server`` builds each instance
    (a :class:`Server` subclass or factory with its signature).
    """

    def __init__(self, sim, on_crash, cpu0: Cpu | None = None, on_add=None, *,
                 section: dict | None = None, fault_stream: str = "topology/faults", server=None):
        cfg = sim.config
        self._on_add = on_add  # on_add(server): each new instance (e.g. its sidecar proxy)
        t = section if section is not None else cfg["topology"]
        self.sim = sim
        self.cores = cfg["server"]["cores"]
        self._server = server if server is not None else Server
        self.plan = FaultPlan.from_config(sim, fault_stream, t["mtbf"], t["mttr"])
        self._on_crash = on_crash
        uniform = None
        if t["balancer"] == "random":
            uniform = sim.sampler({"dist": "uniform", "low": 0, "high": 1}, "topology/balancer",
                                  "number")
        self.lb = LoadBalancer(t["balancer"], uniform=uniform)
        self.servers: list[Server] = []
        for i in range(t["servers"]):
            self._add(cpu0 if i == 0 else None)
        if t["crash_at"]:
            self.servers[t["crash_server"]].crash_at(t["crash_at"])
        self.crash_times: list[float] = []
        if t["scale_out_at"] is not None:
            call_at(sim.env, t["scale_out_at"], self._scale_out, t["scale_out_servers"])

    def _add(self, cpu=None) -> Server:
        s = self._server(self.sim, len(self.servers), self.cores, self.plan, self._crashed, cpu)
        self.servers.append(s)
        self.lb.add(s)
        if self._on_add is not None:
            self._on_add(s)
        return s

    def _scale_out(self, event) -> None:
        for _ in range(event.value):
            self._add()

    def _crashed(self, server: Server) -> None:
        self.crash_times.append(self.sim.now)
        self._on_crash(server)

    def pick(self, key) -> Server | None:
        return self.lb.pick(key)

    @property
    def crashes(self) -> int:
        return sum(s.crashes for s in self.servers)

    # ------------------------------------------------------------ metrics --
    def cpu_metrics(self) -> dict:
        """The server CPU metrics over every instance (sums; means weighted
        by jobs), plus per-instance utilisation spread."""
        cpus = [s.cpu for s in self.servers]
        total = sum(c.account.total for c in cpus)
        waits = sum(c.waits for c in cpus)
        done = sum(c.completed for c in cpus)
        utils = [c.account.utilization() for c in cpus]
        nan = float("nan")
        mean_u = sum(utils) / len(utils)
        return {
            "server_cpu_s": total,
            "server_cpu_wasted_s": sum(c.account.wasted for c in cpus),
            "server_utilization": mean_u,
            "wait_mean": sum(c.wait_sum for c in cpus) / waits if waits else nan,
            "server_jobs_mean": sum(c.jobs_mean for c in cpus),
            "server_sojourn_mean": sum(c.sojourn_sum for c in cpus) / done if done else nan,
            "utilization_max": max(utils),
            "utilization_min": min(utils),
            "utilization_mean": mean_u,
            "imbalance": max(utils) / mean_u if mean_u > 0 else nan,
            "servers_end": len(self.servers),
            "crashes": self.crashes,
        }


class Guarded:
    """A :class:`Server`'s CPU as a pattern written for one ``Cpu`` sees it:
    ``submit`` runs the job on the instance and calls ``done(token, wait)``
    only if the instance has not crashed since (the epoch guard); otherwise
    ``lost(token)``.  Tokens dropped from the run queue at a crash come back
    from :meth:`drop_queued` unwrapped, for the same ``lost``."""

    __slots__ = ("server", "lost")

    def __init__(self, server: Server, lost):
        self.server = server
        self.lost = lost

    def submit(self, work, purpose, done, token=None, wasted=False) -> None:
        s = self.server
        s.cpu.submit(work, purpose, self._done, (done, token, s.epoch), wasted)

    def _done(self, wrapped, wait) -> None:
        done, token, epoch = wrapped
        if self.server.current(epoch):
            done(token, wait)
        else:
            self.lost(token)

    def drop_queued(self) -> list:
        """Drop the instance's run queue; the tokens of the jobs submitted
        through this guard (others, e.g. TLS handshakes submitted to the
        instance's Cpu directly, have nothing to give back)."""
        return [w[1] for w in self.server.cpu.drop_queued()
                if type(w) is tuple and len(w) == 3 and callable(w[0])]


class NoCpu:
    """The CPU of a connection attempt when no instance is up: the attempt
    (its handshake) never completes."""

    def submit(self, *_args, **_kwargs) -> None:
        pass


#: Resolved defaults of the keys not every composed pattern uses.
_DEFAULTS = {"reconnect_jitter": 0.0, "reconnect_backoff": 1.0, "timeseries_bin": 1.0,
             "storm_window": 10.0}


def refuse_unused(cfg: dict, keys, why: str) -> None:
    """A composed pattern that has no use for ``keys`` refuses non-default values."""
    t = cfg["topology"]
    for k in keys:
        if t[k] != _DEFAULTS[k]:
            raise ConfigError(f"topology.{k}", f"got {t[k]:g}s; {cfg['pattern']} has no use "
                              f"for it ({why}): leave it at {_DEFAULTS[k]:g}s")


# ------------------------------------------------------------ sidecars --
#: Keys of the ``sidecar`` section that only ``pattern: sidecar``'s call
#: chain reads, and what takes their place behind a topology.
SIDECAR_PATTERN_ONLY = {
    "mode": "topology.sidecar chooses the proxies (no library mode behind a topology)",
    "depth": "behind a topology the service is the pattern's one server tier",
    "fan_out": "behind a topology the service is the pattern's one server tier",
    "instances": "the instances are topology.servers",
    "app_cores": "an instance's application cores are server.cores",
    "request_size": "message sizes are the pattern's own keys",
    "response_size": "message sizes are the pattern's own keys",
    "lb_policy": "the mesh ingress balances with topology.balancer",
    "library_cpu": "there is no in-process library mode behind a topology",
    "fault_service": "faults behind a topology are crashes (topology.crash_at, mtbf, mttr)",
    "fault_instances": "faults behind a topology are crashes (topology.crash_at, mtbf, mttr)",
    "fault_error_rate": "faults behind a topology are crashes (topology.crash_at, mtbf, mttr)",
    "fault_slowdown": "faults behind a topology are crashes (topology.crash_at, mtbf, mttr)",
}


def _sidecar_defaults() -> dict:
    from commsim.config.load import resolve_section
    from commsim.config.schema import SECTIONS

    return resolve_section(SECTIONS["sidecar"], {}, "sidecar", None)


def refuse_sidecar_keys(cfg: dict, keys: dict) -> None:
    """Refuse non-default values of the ``sidecar`` keys in ``keys`` (key ->
    why it has no meaning for this pattern behind a topology)."""
    sc = cfg.get("sidecar") or {}
    defaults = _sidecar_defaults()
    for k, why in keys.items():
        if k in sc and sc[k] != defaults[k]:
            raise ConfigError(f"sidecar.{k}", f"got {sc[k]!r}; with topology.sidecar this key "
                              f"has no meaning for {cfg['pattern']} ({why}): remove it")


def check_sidecar(cfg: dict) -> None:
    """A composed pattern's check of ``topology.sidecar`` (call it from the
    pattern's ``check``): refused for patterns not in :data:`MESH`; the
    ``sidecar`` keys of the call-chain pattern refused everywhere."""
    t = cfg.get("topology")
    if not t or t["sidecar"] == "none":
        return
    if cfg["pattern"] not in MESH:
        raise ConfigError("topology.sidecar", f"got 'sidecar'; sidecar proxies behind a "
                          f"topology are built for {', '.join(MESH)} only, not yet for "
                          f"{cfg['pattern']}: use 'none'")
    refuse_sidecar_keys(cfg, SIDECAR_PATTERN_ONLY)
    if cfg["pattern"] in ("request_response", "short_polling", "long_polling"):
        refuse_unused(cfg, ("reconnect_jitter",), "with topology.sidecar the client's connection "
                      "ends at the mesh ingress and a crash never resets it; the ingress "
                      "retries the request (sidecar.retries, sidecar.backoff)")
    if cfg["pattern"] in ("sse", "push"):
        why = ("a stream's frames are not requests to retry or time out, and a broken stream "
               "is reconnected by the client: sse.retry, topology.reconnect_jitter and "
               "reconnect_backoff")
        refuse_sidecar_keys(cfg, dict.fromkeys(("retries", "timeout", "backoff",
                                                "breaker_errors", "breaker_open"), why))
    net = cfg["network"]
    if net["handshake"].startswith("tls") and net["tls_server_cpu"] > 0:
        raise ConfigError("network.tls_server_cpu", f"got {net['tls_server_cpu']:g}s with "
                          f"network.handshake {net['handshake']}; with topology.sidecar the "
                          "client's TLS ends at the mesh ingress, which has no CPU in this "
                          "model: set it to 0 (the ingress-to-proxy mTLS has "
                          "sidecar.mtls_handshake_cpu)")
