"""The testbed's real server: one aiohttp process on 127.0.0.1, one thread.

Started by :mod:`commsim.testbed.runner` as ``python -m commsim.testbed.server``
with a JSON plan on its command line.  It binds 127.0.0.1 only, prints
``PORT <n>`` on stdout and serves:

* ``GET|POST /rr?c=ID``: request-response; a body of ``response_body`` bytes;
* ``GET /poll?c=ID``: short poll; the client's pending updates (one per line),
  or an empty body (counted under ``empty_responses``);
* ``GET /lpoll?c=ID``: long poll; held until an update for the client exists
  or ``timeout`` passes (then empty);
* ``GET /sse?c=ID``: an unending ``text/event-stream`` (``data: <update>``);
* ``GET /ws?c=ID``: a WebSocket on which every update is one text frame;
* ``GET /_mark``: a snapshot of the server's own CPU time
  (``time.process_time``: user + system of this process) and counters; the
  runner calls it at the window's edges on a direct (uncounted) connection.

Updates are made here, where their creation time is stamped
(``time.monotonic``, a system-wide clock on Linux, so the client process
reads the same clock): Poisson at ``event_rate`` per client (one stream of
the summed rate, each update for a uniformly chosen client: the same
process) and ``broadcast_rate`` per second for every client.  An update is
``"<uid> <created>|"`` padded with ``x`` to its drawn size.

It stops by itself: after ``max_seconds``, when its stdin closes (its parent
went away) or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import numpy as np
from aiohttp import web

COUNTERS = ("requests", "responses", "empty_responses", "updates_created", "frames",
            "payload_down", "framing_down", "payload_up", "polls")


def _sampler(spec, seed: int, name: str):
    from commsim.dists import make_distribution
    return make_distribution(spec, "size", name).sampler(np.random.default_rng(seed))


def _sse_framing(n: int) -> int:
    """Bytes an SSE frame adds to an update of ``n`` bytes: ``data: `` and the
    blank line, inside one HTTP/1.1 chunk (hex length, two CRLFs)."""
    body = n + 8
    return 8 + len(f"{body:x}") + 4


def _ws_framing(n: int) -> int:
    """RFC 6455 server frame header (unmasked): 2 bytes, 4 from 126, 10 from 65536."""
    return 2 if n < 126 else (4 if n < 65536 else 10)


class Server:
    def __init__(self, plan: dict):
        self.plan = plan
        self.n = int(plan["clients"])
        self.pending: list[list[bytes]] = [[] for _ in range(self.n)]
        self.waiters: list[asyncio.Future | None] = [None] * self.n
        self.streams: list = [None] * self.n
        self.count = dict.fromkeys(COUNTERS, 0)
        self.uid = 0
        self.rng = np.random.default_rng(plan["seed"])
        self.event_size = _sampler(plan["event_size"], plan["seed"] + 1, "workload.event_size")
        self.broadcast_size = _sampler(plan["broadcast_size"], plan["seed"] + 2,
                                       "workload.broadcast_size")
        self.body = b"r" * int(plan.get("response_body", 0))
        self.timeout = float(plan.get("timeout", 30.0))
        self.mode = plan["pattern"]
        self.closing = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------ updates --
    def _make(self, size: int) -> bytes:
        self.uid += 1
        head = f"{self.uid} {time.monotonic():.6f}|".encode()
        return head + b"x" * max(0, size - len(head))

    async def deliver(self, c: int, data: bytes) -> None:
        cnt = self.count
        cnt["updates_created"] += 1
        mode = self.mode
        if mode in ("sse", "push"):
            s = self.streams[c]
            if s is None:
                return  # not connected (yet): the update is lost, as in the model
            cnt["frames"] += 1
            cnt["payload_down"] += len(data)
            try:
                if mode == "sse":
                    cnt["framing_down"] += _sse_framing(len(data))
                    await s.write(b"data: " + data + b"\n\n")
                else:
                    cnt["framing_down"] += _ws_framing(len(data))
                    await s.send_str(data.decode())
            except (ConnectionError, RuntimeError):
                self.streams[c] = None
            return
        self.pending[c].append(data)
        w = self.waiters[c]
        if w is not None and not w.done():
            w.set_result(None)

    async def generate(self) -> None:
        rate = float(self.plan["event_rate"]) * self.n
        brate = float(self.plan["broadcast_rate"])
        total = rate + brate
        if total <= 0:
            return
        rng = self.rng
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            nxt += rng.exponential(1.0 / total)
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if rng.random() * total < rate:
                c = int(rng.integers(self.n))
                await self.deliver(c, self._make(int(self.event_size())))
            else:
                data = self._make(int(self.broadcast_size()))
                for c in range(self.n):
                    await self.deliver(c, data)

    # ----------------------------------------------------------- handlers --
    def _client(self, request) -> int:
        c = int(request.query.get("c", "-1"))
        if not 0 <= c < self.n:
            raise web.HTTPBadRequest(text="bad client id")
        self.count["requests"] += 1
        return c

    async def rr(self, request):
        self._client(request)
        if request.can_read_body:
            body = await request.read()
            self.count["payload_up"] += len(body)
        self.count["responses"] += 1
        self.count["payload_down"] += len(self.body)
        return web.Response(body=self.body, content_type="application/octet-stream")

    def _poll_response(self, c: int):
        items = self.pending[c]
        cnt = self.count
        cnt["responses"] += 1
        cnt["polls"] += 1
        if not items:
            cnt["empty_responses"] += 1
            return web.Response(body=b"", content_type="text/plain")
        self.pending[c] = []
        body = b"\n".join(items)
        n = sum(len(i) for i in items)
        cnt["payload_down"] += n
        cnt["framing_down"] += len(body) - n
        return web.Response(body=body, content_type="text/plain")

    async def poll(self, request):
        return self._poll_response(self._client(request))

    async def lpoll(self, request):
        c = self._client(request)
        if not self.pending[c]:
            fut = asyncio.get_running_loop().create_future()
            self.waiters[c] = fut
            try:
                await asyncio.wait_for(fut, self.timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self.waiters[c] = None
        return self._poll_response(c)

    async def sse(self, request):
        c = self._client(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.count["responses"] += 1
        self.streams[c] = resp
        try:
            # Held until the server stops (no timer per stream: an idle
            # stream costs the server nothing but its socket); a write to a
            # stream whose client went away drops it (deliver()).
            await self.closing
        finally:
            if self.streams[c] is resp:
                self.streams[c] = None
        return resp

    async def ws(self, request):
        c = self._client(request)
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        self.count["responses"] += 1
        self.streams[c] = ws
        try:
            async for _msg in ws:
                pass
        finally:
            if self.streams[c] is ws:
                self.streams[c] = None
        return ws

    async def mark(self, request):
        return web.json_response({"cpu": time.process_time(), "t": time.monotonic(),
                                  **self.count})


async def _main(plan: dict) -> None:
    srv = Server(plan)
    app = web.Application()
    app.router.add_route("*", "/rr", srv.rr)
    app.router.add_get("/poll", srv.poll)
    app.router.add_get("/lpoll", srv.lpoll)
    app.router.add_get("/sse", srv.sse)
    app.router.add_get("/ws", srv.ws)
    app.router.add_get("/_mark", srv.mark)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def _stop(*_a):
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop)
    loop.call_later(float(plan["max_seconds"]), _stop)
    # Parent gone (its end of our stdin closed): stop.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def _watch_parent():
        while await reader.read(1024):
            pass
        _stop()

    watcher = loop.create_task(_watch_parent())
    gen = loop.create_task(srv.generate())
    print(f"PORT {port}", flush=True)
    await stop
    if not srv.closing.done():
        srv.closing.set_result(None)
    gen.cancel()
    watcher.cancel()
    try:
        await asyncio.wait_for(runner.cleanup(), 2.0)
    except (asyncio.TimeoutError, Exception):
        pass


def main() -> None:
    plan = json.loads(sys.argv[1])
    core = plan.get("core")
    if core is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(core)})
        except OSError:
            pass
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(_main(plan))
    sys.stdout.flush()
    os._exit(0)  # no lingering threads or handlers: the process ends here


if __name__ == "__main__":
    main()
