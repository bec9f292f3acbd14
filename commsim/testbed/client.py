"""The testbed's clients and its counting relay, in one asyncio process.

Clients talk to a TCP relay on 127.0.0.1, which forwards every connection to
the server (also on 127.0.0.1) and counts the application bytes in each
direction; at the window's edges it also reads each client connection's
kernel counters (``TCP_INFO``: segments in and out, data segments, smoothed
RTT), so transport bytes (an IP + TCP header per segment: 20 + 20 bytes,
+12 with the timestamp option loopback uses) and pure ACKs are measured, not
assumed.  The relay adds a hop (and CPU in this process) but none at the
server, whose CPU is what is measured.

Clients (one asyncio task each, one ``aiohttp`` session):

* ``request_response``: sync closed loop (request, response, think) or async
  open loop (Poisson at ``clients.rate``); latency = request to response;
* ``short_polling``: poll every ``interval`` (on schedule; a client whose
  response is late polls again at once, so an overloaded server slows its
  clients down: closed loop, where the simulated clients keep to schedule);
* ``long_polling``: poll again as soon as a response arrives;
* ``sse``: one event stream; ``push``: one WebSocket.

An update's latency is its receipt time at the client minus its creation
time at the server (same system-wide monotonic clock), for updates created
inside the window; the run goes on for a drain period after the window so
late ones can still arrive.  Clients start spread over ``spread`` seconds.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time

import numpy as np

TCP_INFO_LEN = 232


def tcp_info(transport):
    """(segs_out, segs_in, data_segs_out, data_segs_in, min_rtt_s, header_bytes)
    of a connected socket, or None."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(raw) < 160:
        return None
    options = raw[5]
    rtt_us = struct.unpack_from("I", raw, 148)[0]  # tcpi_min_rtt: no delayed-ACK bias
    segs_out, segs_in = struct.unpack_from("II", raw, 136)
    data_in, data_out = struct.unpack_from("II", raw, 152)
    header = 40 + (12 if options & 1 else 0)  # TCPI_OPT_TIMESTAMPS
    return segs_out, segs_in, data_out, data_in, rtt_us * 1e-6, header


class Relay:
    """A counting TCP relay: listen on 127.0.0.1, forward to the server."""

    def __init__(self, server_port: int):
        self.server_port = server_port
        self.up = 0
        self.down = 0
        self.open = 0
        self.peak = 0
        self.opened = 0
        self.live: set = set()
        self.closed_tcp = [0, 0, 0, 0, 0]  # window part of closed connections
        self.window = False
        self.server = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _In(self), "127.0.0.1", 0, backlog=4096)
        return self.server.sockets[0].getsockname()[1]

    def mark(self) -> None:
        """Window start: counters to zero, each live connection's base."""
        self.up = self.down = 0
        self.opened = 0
        self.peak = self.open
        self.closed_tcp = [0, 0, 0, 0, 0]
        for conn in self.live:
            conn.base = conn.info() or conn.base
        self.window = True

    def tcp_totals(self):
        """Window sums: segments out/in, data segments out/in, header bytes;
        and the mean smoothed RTT of live connections."""
        tot = list(self.closed_tcp)
        rtts = []
        for conn in self.live:
            info = conn.info()
            if info is None:
                continue
            d = conn.delta(info)
            for i in range(5):
                tot[i] += d[i]
            rtts.append(info[4])
        return tot, (sum(rtts) / len(rtts) if rtts else float("nan"))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.live):
            conn.transport.abort()
            if conn.out is not None and conn.out.transport is not None:
                conn.out.transport.abort()


class _In(asyncio.Protocol):
    """Client-facing side of one relayed connection."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.transport = None
        self.out = None
        self.buf: list[bytes] = []
        self.base = (0, 0, 0, 0, 0.0, 52)

    def info(self):
        return tcp_info(self.transport) if self.transport is not None else None

    def delta(self, info):
        b = self.base
        h = info[5]
        so, si, do, di = (info[0] - b[0], info[1] - b[1], info[2] - b[2], info[3] - b[3])
        return [so, si, do, di, (so + si) * h]

    def connection_made(self, transport):
        r = self.relay
        self.transport = transport
        r.live.add(self)
        r.open += 1
        r.opened += 1
        if r.open > r.peak:
            r.peak = r.open
        if not r.window:
            self.base = (0, 0, 0, 0, 0.0, 52)
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self):
        loop = asyncio.get_running_loop()
        try:
            _t, self.out = await loop.create_connection(lambda: _Out(self), "127.0.0.1",
                                                        self.relay.server_port)
        except OSError:
            self.transport.abort()
            return
        for data in self.buf:
            self.out.transport.write(data)
        self.buf = []
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data):
        self.relay.up += len(data)
        if self.out is not None:
            self.out.transport.write(data)
        else:
            self.buf.append(data)

    def eof_received(self):
        self._account()
        if self.out is not None and self.out.transport is not None:
            self.out.transport.close()
        return False

    def _account(self):
        r = self.relay
        if self in r.live:
            info = self.info()
            if info is not None and r.window:
                d = self.delta(info)
                for i in range(5):
                    r.closed_tcp[i] += d[i]
            r.live.discard(self)
            r.open -= 1

    def connection_lost(self, exc):
        self._account()
        if self.out is not None and self.out.transport is not None:
            self.out.transport.close()

    def pause_writing(self):
        if self.out is not None and self.out.transport is not None:
            self.out.transport.pause_reading()

    def resume_writing(self):
        if self.out is not None and self.out.transport is not None:
            self.out.transport.resume_reading()


class _Out(asyncio.Protocol):
    """Server-facing side of one relayed connection."""

    def __init__(self, inside: _In):
        self.inside = inside
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.inside.relay.down += len(data)
        self.inside.transport.write(data)

    def connection_lost(self, exc):
        if not self.inside.transport.is_closing():
            self.inside._account()
            self.inside.transport.close()

    def pause_writing(self):
        self.inside.transport.pause_reading()

    def resume_writing(self):
        self.inside.transport.resume_reading()


class Clients:
    """Every client of one testbed run, and what they measured."""

    def __init__(self, plan: dict, base_url: str):
        self.plan = plan
        self.url = base_url
        self.mode = plan["pattern"]
        self.n = int(plan["clients"])
        self.w0 = float("inf")
        self.w1 = float("inf")
        self.lat: list[float] = []          # in-window samples
        self.received = 0                   # updates created in window, received by the end
        self.completed = 0                  # request-response operations in window
        self.errors = 0
        self.lags: list[float] = []
        self.rng = np.random.default_rng(plan["seed"] + 7)

    # --------------------------------------------------------- updates --
    def _update(self, line: bytes, now: float) -> None:
        try:
            created = float(line.split(b"|", 1)[0].split(b" ", 1)[1])
        except (IndexError, ValueError):
            self.errors += 1
            return
        if self.w0 <= created < self.w1:
            self.received += 1
            if now < self.w1 + self.plan["drain"]:
                self.lat.append(now - created)

    async def run_client(self, c: int, stop: asyncio.Event) -> None:
        """One client: its own session holding one connection (as a browser
        tab holds one to its host), kept alive between requests."""
        import aiohttp

        conn = aiohttp.TCPConnector(limit=1, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            await self._client(session, c, stop)

    async def _client(self, session, c: int, stop: asyncio.Event) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.Random(c).random() * self.plan["spread"])
        mode = self.mode
        url = f"{self.url}"
        while not stop.is_set():
            try:
                if mode == "request_response":
                    await self._rr(session, c, stop, loop)
                elif mode in ("short_polling", "long_polling"):
                    await self._poll(session, c, stop, loop)
                elif mode == "sse":
                    async with session.get(f"{url}/sse?c={c}") as r:
                        async for line in r.content:
                            if line.startswith(b"data: "):
                                self._update(line[6:].rstrip(b"\n"), time.monotonic())
                elif mode == "push":
                    async with session.ws_connect(f"{url}/ws?c={c}", autoping=True,
                                                  compress=0) as ws:
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                self._update(msg.data.encode(), time.monotonic())
                            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                                break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                self.errors += 1
                await asyncio.sleep(0.1)

    async def _poll(self, session, c, stop, loop):
        path = "/poll" if self.mode == "short_polling" else "/lpoll"
        interval = self.plan.get("interval", 0.0)
        due = loop.time()
        while not stop.is_set():
            async with session.get(f"{self.url}{path}?c={c}") as r:
                body = await r.read()
            now = time.monotonic()
            if body:
                for line in body.split(b"\n"):
                    self._update(line, now)
            if interval > 0:
                # Polls on schedule (phase + k * interval), as the simulator's
                # short_polling.interval means; a client whose response came
                # after its next poll time polls at once (one connection:
                # it cannot have two polls out), so it falls behind.
                due += interval
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    self._lag(loop.time() - due)
                else:
                    self._lag(-wait)

    def _lag(self, late: float) -> None:
        if len(self.lags) < 100000 and self.w0 <= time.monotonic() < self.w1:
            self.lags.append(late)

    async def _rr(self, session, c, stop, loop):
        plan = self.plan
        body = b"q" * int(plan.get("request_body", 0))
        sync = plan["client_mode"] == "sync"
        think = plan["think_sampler"]
        method = session.post if body else session.get
        while not stop.is_set():
            t0 = time.monotonic()
            if sync:
                async with method(f"{self.url}/rr?c={c}", **({"data": body} if body else {})) as r:
                    await r.read()
                t1 = time.monotonic()
                if self.w0 <= t0 < self.w1:
                    self.completed += 1
                    self.lat.append(t1 - t0)
                gap = think()
                due = loop.time() + gap
                await asyncio.sleep(gap)
                self._lag(loop.time() - due)
            else:
                gap = float(self.rng.exponential(1.0 / plan["rate"]))
                loop.create_task(self._one_rr(session, c, method, body))
                due = loop.time() + gap
                await asyncio.sleep(gap)
                self._lag(loop.time() - due)

    async def _one_rr(self, session, c, method, body):
        import aiohttp

        t0 = time.monotonic()
        try:
            async with method(f"{self.url}/rr?c={c}", **({"data": body} if body else {})) as r:
                await r.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            self.errors += 1
            return
        if self.w0 <= t0 < self.w1:
            self.completed += 1
            self.lat.append(time.monotonic() - t0)
