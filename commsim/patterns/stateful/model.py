"""The stateful model (assumptions in the package docstring)."""

from __future__ import annotations

import math

from commsim.clients import ClientPopulation
from commsim.metrics.collect import latency_metrics, percentiles
from commsim.metrics.topology import imbalance
from commsim.network import Message, Network
from commsim.nodes.cluster import Cluster
from commsim.nodes.store import Store
from commsim.patterns.stateful.connect import ClientConnections
from commsim.patterns.stateful.servers import Op, StatefulServer

#: The ``stateful`` keys that describe the cluster (as the ``topology`` keys do).
CLUSTER_KEYS = ("servers", "balancer", "crash_server", "mtbf", "mttr", "scale_out_at",
                "scale_out_servers")


class StatefulModel:
    """Servers behind a balancer, state in the server, a store or a token."""

    def __init__(self, sim):
        cfg = sim.config
        st = cfg["stateful"]
        self.sim = sim
        self.env = sim.env
        self.cfg = st
        self.stateful = st["mode"] == "stateful"
        self.token = not self.stateful and st["stateless_state"] == "token"
        self.use_store = not self.stateful and not self.token
        self.bin = st["timeseries_bin"]
        self.nbins = int(math.ceil(sim.end / self.bin)) + 1
        self.net = Network(sim)
        self.store = None
        if self.use_store:
            self.store = Store(sim, "store", st["store_cores"], st["store_service_time"],
                               st["store_latency"], request_size=100, ack_size=50)
        self.detect_time = st["detect_time"]
        self.down = 0                  # servers not alive now
        # The servers, the balancer, crashes and the scale-out: the shared
        # Cluster, described by the stateful keys (fault streams stateful/mtbf,
        # stateful/mttr), its instances StatefulServer.
        section = {k: st[k] for k in CLUSTER_KEYS}
        section["crash_at"] = [st["crash_at"]] if st["crash_at"] is not None else None
        self.cluster = Cluster(sim, self.crashed, section=section, fault_stream="stateful",
                               server=self._new_server)
        self.servers: list[StatefulServer] = self.cluster.servers
        self.lb = self.cluster.lb
        self.faults = self.cluster.plan
        self._service = sim.sampler(cfg["server"]["service_time"], "server/service")
        self._login_cpu = sim.sampler(st["login_cpu"], "stateful/login_cpu")
        p = 1.0 / st["requests_per_session"]
        self._session_len = sim.sampler({"dist": "uniform", "low": 0, "high": 1},
                                        "stateful/session_length", "number")
        self._log1mp = math.log1p(-p) if p < 1 else None
        self.req_header = int(st["request_header"])
        self.req_body = int(st["request_body"])
        self.resp_header = int(st["response_header"])
        self.resp_body = int(st["response_body"])
        self.session_size = int(st["session_size"])
        self.token_size = int(st["token_size"])
        n = cfg["clients"]["count"]
        self.session = [None] * n      # the client's session id (None: logged out)
        self.remaining = [0] * n       # requests left in the session
        self.where: list = [None] * n  # stateful: the server holding the live session
        self._next_sid = 0
        # The window's measurements, counted by the operation's start (t0).
        rec = sim.recorder
        self.lat = rec.sample("stateful/latency")
        self.ok = rec.counter("stateful/ok")
        self.failed = rec.counter("stateful/failed")
        self.crash_ops = rec.counter("stateful/crash_ops")
        self.crash_ok = rec.counter("stateful/crash_ok")
        self.logins = rec.counter("stateful/logins")
        self.relogins = rec.counter("stateful/relogins")
        self.sessions_lost = rec.counter("stateful/sessions_lost")
        self.crash_log: list = []      # (time, server index, frozenset of clients)
        self.relogin_log: list = []    # (time, client) of every forced login (whole run)
        self.ts_ok = [0] * self.nbins
        self.ts_fail = [0] * self.nbins
        self.ts_lat = [0.0] * self.nbins
        self.ts_relogin = [0] * self.nbins
        # Client connections (network.handshake other than none: connect.py).
        self.conns = ClientConnections(self) if cfg["network"]["handshake"] != "none" else None
        # network.loss: a message the client's link gives up on (after
        # network.max_retries retransmissions) fails its operation.
        self.net.up.on_drop = self.net.down.on_drop = self._given_up
        # Per-operation records (commsim run --records) only when asked for
        # (stateful/records.py); otherwise the clients call start_op directly.
        self.records = None
        if rec.records:
            from commsim.patterns.stateful.records import StatefulRecords

            self.records = StatefulRecords(self, rec.ops("stateful"))
        self.clients = ClientPopulation(sim, self.start_op if self.records is None
                                        else self.records.start)

    # -------------------------------------------------------------- faults --
    def _new_server(self, *args) -> StatefulServer:
        return StatefulServer(self, *args)

    def crash(self, s: StatefulServer) -> None:
        """Kill server ``s`` now (see :meth:`crashed`)."""
        s.crash()

    def crashed(self, s: StatefulServer) -> None:
        """Server ``s`` just crashed: its memory and its requests are lost."""
        now = self.sim.now
        self.down += 1
        lost = frozenset(s.sessions)
        self.sessions_lost.add(len(lost))
        self.crash_log.append((now, s.index, lost))
        for cid in lost:
            self.where[cid] = None
        s.sessions.clear()
        dropped = s.cpu.drop_queued()
        for op in list(s.inflight):
            self._reply(s, op, "reset", 0)
        s.inflight.clear()
        if self.conns is not None:
            self.conns.crashed(s, dropped)
        # (the balancer notices detect_time later: StatefulServer.on_crash)

    def restarted(self, s: StatefulServer) -> None:
        self.down -= 1

    # -------------------------------------------------------------- client --
    def start_op(self, cid, done) -> None:
        now = self.sim.now
        op = Op(cid, done, now, self._service(), self.down > 0)
        if self.conns is not None:
            self.conns.open(op)  # then first_message
        else:
            self.first_message(op, 0)

    def first_message(self, op: Op, handshake: int) -> None:
        """Send the operation's login or request (``handshake``: bytes of the
        client's last handshake flight, which ride with it)."""
        if self.session[op.cid] is None:
            self._send_login(op, False, handshake)
        else:
            self._send_request(op, handshake)

    def _given_up(self, msg) -> None:
        if self.conns is not None and self.conns.dropped(msg):
            return  # a handshake flight: sent again
        self._finish(msg.data, "lost")  # the client's TCP gave up: the operation fails

    def _send_login(self, op: Op, forced: bool, handshake: int = 0) -> None:
        op.kind = "login"
        op.forced = forced
        self.logins.add_if(op.t0)
        if forced:
            self.relogins.add_if(op.t0)
            self.relogin_log.append((self.sim.now, op.cid))
            self.ts_relogin[int(self.sim.now / self.bin)] += 1
        msg = Message("login", op.cid, "lb", header=self.req_header, payload=self.req_body,
                      handshake=handshake, created=self.sim.now, data=op, label="login")
        self.net.up.send(msg, self._lb_receive)

    def _send_request(self, op: Op, handshake: int = 0) -> None:
        op.kind = "request"
        header = self.req_header + (self.token_size if self.token else 0)
        msg = Message("request", op.cid, "lb", header=header, payload=self.req_body,
                      handshake=handshake, created=self.sim.now, data=op, label="request")
        self.net.up.send(msg, self._lb_receive)

    def _client_receive(self, msg) -> None:
        op: Op = msg.data
        status = msg.label
        cid = op.cid
        if op.kind == "login":
            if status != "ok":
                self._finish(op, status)
                return
            self.session[cid] = op.sid
            self._send_request(op)
            return
        if status == "ok":
            self.remaining[cid] -= 1
            if op.last:
                self.session[cid] = None
            self._finish(op, status)
        elif status == "401" and not op.forced:
            self.session[cid] = None
            self._send_login(op, forced=True)
        else:
            if status == "401":
                self.session[cid] = None
            self._finish(op, status)

    def _finish(self, op: Op, status: str) -> None:
        """``op`` ends with ``status``: ``ok``, else the failing answer's label
        (reset, 503, 401) or ``lost`` (the link gave up on a message)."""
        ok = status == "ok"
        now = self.sim.now
        t0 = op.t0
        if ok:
            self.ok.add_if(t0)
            self.lat.record(t0)
        else:
            self.failed.add_if(t0)
        if op.during_crash:
            self.crash_ops.add_if(t0)
            self.crash_ok.add_if(t0, ok)
        b = int(now / self.bin)  # the time series cover the whole run (warm-up included)
        if ok:
            self.ts_ok[b] += 1
            self.ts_lat[b] += now - t0
        else:
            self.ts_fail[b] += 1
        if self.conns is not None:
            self.conns.finished(op, ok)
        if self.records is not None:
            self.records.finished(op, status)
        op.done()

    # ------------------------------------------------------------ balancer --
    def _lb_receive(self, msg) -> None:
        op: Op = msg.data
        # The connection's server (L4: picked at connect), else by policy per request.
        s = op.conn.server if op.conn is not None else self.lb.pick(op.cid)
        if s is None:
            self._lb_reply(op, "503", 0)
            return
        s.active += 1
        op.server = s
        s.link_in.send(msg, self._server_receive)

    def _lb_back(self, msg) -> None:
        op: Op = msg.data
        s = op.server
        if s is not None:
            s.active -= 1
            op.server = None
        if op.last and msg.label == "ok":
            self.lb.affinity.pop(op.cid, None)  # the affinity cookie ends with the session
        self._lb_reply(op, msg.label, msg.payload)

    def _lb_reply(self, op: Op, status: str, payload: int) -> None:
        header = self.resp_header
        msg = Message("response" if status == "ok" else "error", "lb", op.cid, header=header,
                      payload=payload, created=self.sim.now, data=op, label=status)
        self.net.down.send(msg, self._client_receive)

    # -------------------------------------------------------------- server --
    def _server_receive(self, msg) -> None:
        op: Op = msg.data
        s: StatefulServer = op.server
        if not s.up or (op.conn is not None and op.conn.epoch != s.epoch):
            self._reply(s, op, "reset", 0)  # connection refused (or reset by a crash since)
            return
        op.epoch = s.epoch
        s.inflight[op] = None
        if op.kind == "login":
            work = self._login_cpu() + (self.cfg["token_sign_cpu"] if self.token else 0.0)
            s.cpu.submit(work, "login", self._login_done, op)
        elif self.stateful:
            if s.sessions.get(op.cid) != self.session[op.cid] or self.session[op.cid] is None:
                self._reply(s, op, "401", 0)
                return
            s.cpu.submit(op.service, "request", self._served, op)
        elif self.token:
            s.cpu.submit(op.service + self.cfg["token_verify_cpu"], "request", self._served, op)
        else:
            self.store.call(s.name, "read", op.cid, self._after_read, op)

    def _current(self, op: Op) -> bool:
        s = op.server
        return s is not None and op in s.inflight and s.epoch == op.epoch

    def _login_done(self, op: Op, _wait) -> None:
        if not self._current(op):
            return
        s = op.server
        sid = self._next_sid
        self._next_sid += 1
        op.sid = sid
        cid = op.cid
        self.remaining[cid] = self._geometric()
        if self.stateful:
            old = self.where[cid]
            if old is not None and old is not s:
                old.sessions.pop(cid, None)
            s.sessions[cid] = sid
            self.where[cid] = s
            self._reply(s, op, "ok", 0)
        elif self.token:
            self._reply(s, op, "ok", self.token_size)
        else:
            self.store.call(s.name, "write", cid, self._login_stored, op, size=self.session_size)

    def _login_stored(self, op: Op, _found) -> None:
        if self._current(op):
            self._reply(op.server, op, "ok", 0)

    def _after_read(self, op: Op, found: bool) -> None:
        if not self._current(op):
            return
        if not found:
            self._reply(op.server, op, "401", 0)
            return
        op.server.cpu.submit(op.service, "request", self._served, op)

    def _served(self, op: Op, _wait) -> None:
        if not self._current(op):
            return
        s = op.server
        cid = op.cid
        now = self.sim.now
        s.served[int(now / self.bin)] += 1
        if self.remaining[cid] <= 1:
            op.last = True  # this request logs out
            if self.stateful:
                s.sessions.pop(cid, None)
                self.where[cid] = None
            elif self.use_store:
                self.store.call(s.name, "delete", cid, _ignore, None)
        self._reply(s, op, "ok", self.resp_body)

    def _reply(self, s: StatefulServer, op: Op, status: str, payload: int) -> None:
        s.inflight.pop(op, None)
        kind = "response" if status == "ok" else "error"
        msg = Message(kind, s.name, "lb", header=self.resp_header, payload=payload,
                      created=self.sim.now, data=op, label=status)
        s.link_out.send(msg, self._lb_back)

    def _geometric(self) -> int:
        """Requests in a session: geometric on {1, 2, ...} with the configured mean."""
        if self._log1mp is None:
            return 1
        u = self._session_len()
        return 1 + int(math.log1p(-u) / self._log1mp)

    # ------------------------------------------------------------- metrics --
    def in_flight(self) -> int:
        n = self.net.in_flight() + sum(s.link_in.pending() + s.link_out.pending() for s in self.servers)
        return n + (self.store.in_flight() if self.store is not None else 0)

    def server_utilizations(self) -> list[float]:
        sim = self.sim
        out = []
        for s in self.servers:
            span = sim.overlap(s.created, sim.end)
            out.append(s.cpu.account.total / (s.cpu.cores * span) if span > 0 else math.nan)
        return out

    def imbalance_end(self) -> float:
        sim = self.sim
        t0 = sim.end - sim.duration / 4
        b0, b1 = int(t0 / self.bin), int(sim.end / self.bin)
        loads = [sum(s.served[b0:b1]) for s in self.servers if s.created <= t0 and s.routable]
        return imbalance(loads)

    def metrics(self) -> dict:
        sim = self.sim
        ok, failed, lat = self.ok.n, self.failed.n, self.lat.values
        out = {"throughput": ok / sim.duration}
        out.update(latency_metrics(lat))
        out.update(percentiles(lat, "latency", qs=(90,)))
        total = ok + failed
        out["availability"] = ok / total if total else math.nan
        crash_ops = self.crash_ops.n
        out["availability_crash"] = self.crash_ok.n / crash_ops if crash_ops else math.nan
        out["failed_requests"] = failed
        out["sessions_lost"] = self.sessions_lost.n
        out["relogins"] = self.relogins.n
        out["logins"] = self.logins.n
        utils = [u for u in self.server_utilizations() if not math.isnan(u)]
        out["utilization_max"] = max(utils)
        out["utilization_min"] = min(utils)
        out["utilization_mean"] = sum(utils) / len(utils)
        out["imbalance"] = imbalance(utils)
        out["imbalance_end"] = self.imbalance_end()
        out["servers_end"] = len(self.servers)
        out["server_cpu_s"] = sum(s.cpu.account.total for s in self.servers)
        if self.store is not None:
            out["store_ops"] = self.store.ops
            out["store_utilization"] = self.store.cpu.account.utilization()
            out["store_wait_mean"] = self.store.cpu.wait_mean
        else:
            out["store_ops"] = 0
            out["store_utilization"] = 0.0
            out["store_wait_mean"] = math.nan
        if self.conns is not None:
            out.update(self.conns.metrics())
        else:
            out["connections_opened"] = out["handshakes"] = 0
        out["requests"] = sim.bytes.messages("request")
        out["bytes_per_request"] = sim.bytes.total / ok if ok else math.nan
        return out

    def timeseries(self) -> dict:
        """Per-bin series over the whole run (warm-up included): time, throughput,
        mean latency, failures, relogins and per-server requests served."""
        n = int(math.ceil(self.sim.end / self.bin))
        t = [(i + 0.5) * self.bin for i in range(n)]
        lat = [self.ts_lat[i] / self.ts_ok[i] if self.ts_ok[i] else math.nan for i in range(n)]
        served = {s.index: s.served[:n] for s in self.servers}
        imb = []
        for i in range(n):
            loads = [served[s.index][i] for s in self.servers
                     if s.created <= i * self.bin and (served[s.index][i] > 0 or s.up)]
            imb.append(imbalance(loads) if sum(loads) > 0 else math.nan)
        return {"time": t, "throughput": [x / self.bin for x in self.ts_ok[:n]], "latency_mean": lat,
                "failed": self.ts_fail[:n], "relogins": self.ts_relogin[:n], "imbalance": imb,
                "served": served}


def _ignore(_token, _found) -> None:
    pass
