"""Notification patterns behind a topology: N instances, a load balancer, crashes.

Mixins, built only when :func:`commsim.nodes.cluster.active` says the config
asks for a cluster: :class:`ClusteredStreaming` (sse, push),
:class:`ClusteredPolling` (short polling) and :class:`ClusteredLongPolling`
(long polling); each class docstring says what a crash means there.  The
streaming part in detail:

:class:`ClusteredStreaming` is a mixin over :class:`._Streaming` (built only
when :func:`commsim.nodes.cluster.active` says the config asks for a
cluster; the default path is the plain class, bit-identical).  It routes
each (re)connect through the balancer to one :class:`~commsim.nodes.cluster.Server`
and keeps every piece of that client's server work (opening response, event
frames, the TLS handshake) on that instance's CPU.

What a crash of an instance means for sse and push
--------------------------------------------------
* Every stream the instance held, and every connect in progress to it, is
  reset: the client learns of it by a zero-byte close on its stream, after
  the frames already on the wire (they left the server and arrive).  It then
  reconnects through the balancer to a surviving instance after the
  pattern's own delay (``sse.retry``; push: at once) plus a uniform
  [0, ``topology.reconnect_jitter``], paying a new connection and handshake
  (``network.tls_server_cpu`` on the survivor).  If no instance is up it
  retries after ``topology.reconnect_backoff``, doubled per failed try (<= 64x).
* Work in the instance's CPU is lost: queued jobs are dropped
  (:meth:`~commsim.nodes.Cpu.drop_queued`), running ones are discarded when
  they finish (the :class:`~commsim.nodes.faults.Crashable` epoch guard).
  A lost event frame is replayed after the reconnect with ``sse.resume``
  (Last-Event-ID names the last update the client got; updates exist
  outside the instance, e.g. in a shared log), so nothing is missed; without
  resume (SSE without it, push) it is ``missed``, as is every update created
  for the client while it has no stream.
* Connects and handshakes that were in flight to the crashed instance are
  voided by a per-client connection generation: when they arrive they are
  ignored (their bytes are counted; the ledger balances).
* ``reconnects`` counts every connection attempt after a drop, an offline
  period or a crash; ``crash_resets`` the streams and connects a crash
  reset (so with survivors up: reconnects caused by crashes = crash_resets).
* Jobs (``workload.job_rate``) are refused with a topology.
"""

from __future__ import annotations

from array import array

from commsim.engine.simulation import call_later
from commsim.metrics import cluster as _defs  # noqa: F401  (defines the metrics)
from commsim.metrics.collect import percentiles
from commsim.network import Message
from commsim.nodes.cluster import Cluster
from commsim.patterns.notifications.base import SERVER

_BACKOFF_CAP = 64.0


class _ClusterParts:
    """What the composed notification patterns share: the cluster, the
    recorder's ``topology`` Series, storm latencies and the metrics."""

    def _build_cluster(self) -> None:
        sim = self.sim
        t = self._t = sim.config["topology"]
        self.cluster = Cluster(sim, self._server_crashed, self.cpu,
                               on_add=getattr(self, "_on_add", None))  # sidecars (mesh_polling.py)
        self.crash_resets = 0
        self.attempts_total = 0          # whole run, for the series
        self.lat_created = array("d")    # creation time of each latency sample
        self._lat_sum = 0.0
        self._lat_n = 0
        servers = self.cluster.servers

        def sample():
            tls = 0.0
            for s in servers:
                tls += s.cpu.account.by_purpose.get("handshake", 0.0)
            return (self.attempts_total, tls, self._lat_sum, self._lat_n, self.conns,
                    sum(1 for s in servers if s.up))

        self.series = sim.recorder.every("topology", t["timeseries_bin"], sample)

    def _arrived(self, c, created, uid, now, done=-1.0, size=-1) -> None:
        k = len(self.lat)
        super()._arrived(c, created, uid, now, done, size)
        if len(self.lat) > k:
            self.lat_created.append(created)
            self._lat_sum += now - created
            self._lat_n += 1

    # ------------------------------------------------------------ metrics --
    def metrics(self) -> dict:
        out = super().metrics()
        sim = self.sim
        out.update(self.cluster.cpu_metrics())
        out["crash_resets"] = self.crash_resets
        hs = sum(s.cpu.account.by_purpose.get("handshake", 0.0) for s in self.cluster.servers)
        out["handshake_cpu_s"] = hs
        # Peaks over the series' bins inside the window.
        t, v = self.series.t, self.series.values
        bin_ = self._t["timeseries_bin"]
        rec_peak = tls_peak = 0.0
        for i in range(1, len(t)):
            if t[i - 1] >= sim.start and t[i] <= sim.end:
                rec_peak = max(rec_peak, (v[i][0] - v[i - 1][0]) / bin_)
                tls_peak = max(tls_peak, (v[i][1] - v[i - 1][1]) / bin_)
        out["reconnect_rate_peak"] = rec_peak
        out["handshake_cpu_peak"] = tls_peak
        crashes = [x for x in self.cluster.crash_times if sim.start <= x < sim.end]
        nan = float("nan")
        if crashes:
            t0 = crashes[0]
            t1 = t0 + self._t["storm_window"]
            storm = array("d", (lat for lat, cr in zip(self.lat, self.lat_created)
                                if t0 <= cr < t1))
            p = percentiles(storm, "latency_storm", mean=True)
            out["latency_storm_mean"] = p["latency_storm_mean"]
            out["latency_storm_p99"] = p["latency_storm_p99"]
        else:
            out["latency_storm_mean"] = out["latency_storm_p99"] = nan
        return out


class ClusteredStreaming(_ClusterParts):
    """Mixin: put before an :class:`._Streaming` subclass (see the module docstring)."""

    def __init__(self, sim):
        t = sim.config["topology"]
        self.cluster = None  # set up before the base starts the clients (below)
        self._t = t
        super().__init__(sim)

    # The base's __init__ starts the clients through _staggered_start, which
    # runs only when the simulation runs; the cluster is built in
    # _build_cluster, called from the first hook that needs it.
    def _build_cluster(self) -> None:
        super()._build_cluster()
        t = self._t
        n = self.n
        self.assigned: list = [None] * n
        self.gen = [0] * n
        self.tries = [0] * n
        jitter = t["reconnect_jitter"]
        self._jitter = (self.sim.sampler({"dist": "uniform", "low": 0, "high": jitter},
                                         "topology/reconnect_jitter") if jitter > 0 else None)
        self.backoff = t["reconnect_backoff"]
        self.connector.cpu_of = lambda c: self.assigned[c].cpu

    def _staggered_start(self, span, start) -> None:
        if self.cluster is None:
            self._build_cluster()
        super()._staggered_start(span, start)

    # ------------------------------------------------------------ routing --
    def _release(self, c: int) -> None:
        s = self.assigned[c]
        if s is not None:
            s.active -= 1
            self.assigned[c] = None

    def _connect(self, c: int) -> None:
        self._release(c)
        s = self.cluster.pick(c)
        if s is None:  # nothing up: back off and try again
            k = self.tries[c]
            self.tries[c] = k + 1
            call_later(self.env, self.backoff * min(2.0 ** k, _BACKOFF_CAP), self._retry, c)
            return
        self.tries[c] = 0
        s.active += 1
        self.assigned[c] = s
        self.connecting[c] = 1
        self.gen[c] += 1
        msg = Message("request", c, SERVER, self.request_header, 0, 0, 0, self.env.now,
                      data=(s, s.epoch, self.gen[c]), label="connect")
        if self.handshakes:  # every (re)connect is a new connection
            self.connector.close(c)
            self.connector.ensure(
                c, lambda extra: self._send_with(msg, extra, self._server_connect))
        else:
            self.up.send(msg, self._server_connect)

    def _retry(self, event) -> None:
        c = event.value
        if self.online[c] and not self.open[c] and not self.connecting[c]:
            self.attempts_total += 1
        super()._retry(event)

    def _availability(self, c: int, online: bool) -> None:
        if online and not self.open[c] and not self.connecting[c]:
            self.attempts_total += 1
        super()._availability(c, online)
        if not online:
            self._release(c)

    def _close(self, c: int) -> None:
        super()._close(c)
        if not self.connecting[c]:
            self._release(c)

    def _server_connect(self, msg) -> None:
        s, epoch, gen = msg.data
        c = msg.src
        if gen != self.gen[c] or not s.current(epoch):
            return  # a connect voided by a crash (the client was reset)
        replay = self.backlog.pop(c, None)
        s.cpu.submit(self._service(), "connect", self._opened_on, (c, replay, s, s.epoch),
                     replay is None)

    def _opened_on(self, token, wait) -> None:
        c, replay, s, epoch = token
        if not s.current(epoch):
            if replay:
                self.backlog.setdefault(c, [])[:0] = replay
            return
        self._opened((c, replay), wait)

    # ------------------------------------------------------------- frames --
    def _send_frame(self, c, created, size, uid) -> None:
        s = self.assigned[c]
        s.cpu.submit(self._service(), "event", self._frame_on, (c, created, size, uid, s, s.epoch))

    def _frame_on(self, token, wait) -> None:
        c, created, size, uid, s, epoch = token
        if not s.current(epoch):
            self._orphan(c, created, size, uid)
            return
        self._frame_ready((c, created, size, uid), wait)

    def _orphan(self, c, created, size, uid) -> None:
        """An event frame lost in a crashed instance's CPU."""
        if self.resume:
            self._deliver(c, created, size, uid)  # sent on the new stream, or waits for it
        else:
            self._lost(created, c, size)

    # -------------------------------------------------------------- crash --
    def _server_crashed(self, s) -> None:
        env = self.env
        counted = env.now >= self.sim.start
        for c in range(self.n):
            if self.assigned[c] is not s:
                continue
            was_open = self.open[c]
            if not (was_open or self.connecting[c]):
                continue
            if was_open:
                self.open[c] = 0
                self._conn(-1)
            self.connecting[c] = 0
            self.gen[c] += 1
            self._release(c)
            if self.handshakes:
                self.connector.close(c)
            if counted:
                self.crash_resets += 1
            self.down.send_ordered(Message("close", SERVER, c, created=env.now, label="reset"),
                                   self._client_reset, c)
        for token in s.cpu.drop_queued():
            if token is None:
                continue  # a TLS handshake job: that connect was voided above
            if len(token) == 6:
                c, created, size, uid, _s, _e = token
                self._orphan(c, created, size, uid)
            elif len(token) == 4:
                c, replay, _s, _e = token
                if replay:
                    self.backlog.setdefault(c, [])[:0] = replay

    def _client_reset(self, msg) -> None:
        c = msg.dst
        if self.online[c]:
            delay = self.retry + (self._jitter() if self._jitter is not None else 0.0)
            call_later(self.env, delay, self._retry, c)

