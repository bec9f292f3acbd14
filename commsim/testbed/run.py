"""Run an experiment's sweep on the loopback testbed and write its results.

One testbed run per sweep point and replication: a fresh server process
(:mod:`commsim.testbed.server`, its own process group, pinned to one core
where the OS allows), a counting relay and the clients in this process
(:mod:`commsim.testbed.client`).  Timeline of a run: clients start spread
over ``min(1 s, warmup)``; after ``warmup`` the window opens (server CPU and
counters, relay bytes and TCP counters are read); after ``duration`` it
closes; a drain period lets updates created near its end arrive; then
everything stops.  A run longer than its own timeline plus 30 s is cut off.

What the YAML means here: ``clients``, ``workload`` and the pattern's
section drive the run; ``network`` is not emulated (the network is the
loopback interface: its RTT is measured and reported as ``loopback_rtt``);
``server.service_time`` and header sizes are not used: they are what the
testbed measures (``commsim calibrate`` fits them).  Keys that would change
the behaviour and that the testbed does not implement are refused.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from commsim.errors import ConfigError

PATTERNS = ("request_response", "short_polling", "long_polling", "sse", "push")
MAX_CLIENTS = 5000
MAX_SECONDS = 600.0
# key -> value the testbed supports (anything else is refused)
UNSUPPORTED = {
    "short_polling.jitter": 0.0,
    "workload.job_rate": 0.0,
    "workload.online_time": None,
    "clients.service_time": 0.0,
    "clients.buffer": None,
    "sse.connection_lifetime": None,
    "push.connection_lifetime": None,
    "network.loss": 0.0,
    "network.handshake": "none",
    "request_response.encoding": "none",
    "request_response.chunk_size": None,
}
#: keys the testbed measures rather than uses (reported, never silently dropped)
MEASURED = ("network.latency", "network.bandwidth", "server.service_time", "server.cores",
            "*.request_header", "*.response_header", "*.frame_overhead")


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def plan_of(cfg: dict, core: int | None = None) -> dict:
    """The server/client plan of one resolved config (refusing what the
    testbed cannot do, with the key, the value and what is allowed)."""
    pattern = cfg["pattern"]
    if pattern not in PATTERNS:
        raise ConfigError("pattern", f"got {pattern!r}; the testbed runs {', '.join(PATTERNS)}")
    for key, allowed in UNSUPPORTED.items():
        value = _get(cfg, key)
        if value is _MISSING or value == allowed:
            continue
        if isinstance(value, dict) and value.get("dist") is None and allowed is None:
            continue
        raise ConfigError(key, f"got {value!r}; the testbed supports only {allowed!r}")
    n = int(cfg["clients"]["count"])
    if n > MAX_CLIENTS:
        raise ConfigError("clients.count", f"got {n}; the testbed runs at most {MAX_CLIENTS} "
                          "clients (one client process)")
    warmup = float(cfg.get("warmup", 0.0))
    duration = float(cfg["duration"])
    if warmup + duration > MAX_SECONDS:
        raise ConfigError("duration", f"got warmup + duration = {warmup + duration:g} s; the "
                          f"testbed runs at most {MAX_SECONDS:g} s per run")
    wl = cfg.get("workload") or {}
    sec = cfg.get(pattern) or {}
    plan = {
        "pattern": pattern, "clients": n, "seed": int(cfg["seed"]),
        "event_rate": float(wl.get("event_rate", 0.0)),
        "event_size": wl.get("event_size", 200.0),
        "broadcast_rate": float(wl.get("broadcast_rate", 0.0)),
        "broadcast_size": wl.get("broadcast_size", 200.0),
        "warmup": max(warmup, 0.5), "duration": duration,
        "spread": min(1.0, max(warmup, 0.5)),
        "core": core,
    }
    if pattern == "request_response":
        from commsim.dists import make_distribution
        for key in ("request_body", "response_body"):
            spec = sec.get(key, 0.0)
            dist = make_distribution(spec, "size", f"request_response.{key}")
            if not dist.is_constant:
                raise ConfigError(f"request_response.{key}", f"got {spec!r}; the testbed "
                                  "supports a constant size only")
            plan[key] = int(dist.mean)
        clients = cfg["clients"]
        plan["client_mode"] = clients["mode"]
        plan["rate"] = float(clients.get("rate", 1.0))
        plan["think"] = clients.get("think_time", 1.0)
        plan["drain"] = 0.5
    else:
        if plan["event_rate"] <= 0 and plan["broadcast_rate"] <= 0:
            raise ConfigError("workload.event_rate", "got 0 and no broadcast_rate; the testbed "
                              "needs updates to measure")
        plan["interval"] = float(sec.get("interval", 0.0)) if pattern == "short_polling" else 0.0
        plan["timeout"] = float(sec.get("timeout", 30.0)) if pattern == "long_polling" else 30.0
        plan["drain"] = plan["interval"] + 1.0
    plan["max_seconds"] = plan["warmup"] + duration + plan["drain"] + 30.0
    return plan


def _cores() -> tuple[int | None, set | None]:
    """(server core, client cores): the last allowed CPU for the server, the
    others for the clients (None where affinity is not available)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return cpus[0], None
    return cpus[-1], set(cpus[:-1])


class ServerProcess:
    """The server in its own process group; stopped on every path."""

    def __init__(self, plan: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "commsim.testbed.server", json.dumps(plan)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.port = None

    def wait_port(self, timeout: float = 20.0) -> int:
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        end = time.monotonic() + timeout
        line = b""
        while time.monotonic() < end:
            if not sel.select(timeout=max(0.0, end - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if line.startswith(b"PORT "):
                self.port = int(line.split()[1])
                sel.close()
                return self.port
            if not line:
                break
        sel.close()
        err = b""
        if self.proc.poll() is not None:
            err = self.proc.stderr.read()[-2000:]
        self.stop()
        raise RuntimeError(f"testbed server did not start: {err.decode(errors='replace')}")

    def stop(self) -> None:
        p = self.proc
        if p.poll() is None:
            try:
                p.stdin.close()  # the server stops when its stdin closes ...
            except OSError:
                pass
            try:
                p.wait(3.0)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # ... or on SIGTERM ...
                p.wait(2.0)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # ... or is killed, with its group
            except ProcessLookupError:
                pass
            p.wait()
        for f in (p.stdout, p.stderr, p.stdin):
            try:
                f.close()
            except OSError:
                pass


async def _session_run(plan: dict, port: int) -> dict:
    import aiohttp

    from commsim.dists import make_distribution
    from commsim.metrics.collect import latency_metrics
    from commsim.testbed.client import Clients, Relay

    import numpy as np

    relay = Relay(port)
    rport = await relay.start()
    clients = Clients(plan, f"http://127.0.0.1:{rport}")
    if plan["pattern"] == "request_response":
        plan["think_sampler"] = make_distribution(plan["think"], "duration", "clients.think_time") \
            .sampler(np.random.default_rng(plan["seed"] + 11))
    stop = asyncio.Event()
    ctrl = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    tasks = []
    try:
        for c in range(plan["clients"]):
            tasks.append(asyncio.ensure_future(clients.run_client(c, stop)))

        async def mark():
            async with ctrl.get(f"http://127.0.0.1:{port}/_mark") as r:
                return await r.json()

        await asyncio.sleep(plan["warmup"])
        m0 = await mark()
        relay.mark()
        clients.w0 = m0["t"]
        tcp0 = relay.tcp_totals()  # zero by construction; keeps the call on both edges
        await asyncio.sleep(plan["duration"])
        m1 = await mark()
        up, down, peak, opened = relay.up, relay.down, relay.peak, relay.opened
        (so, si, do, di, hdr), rtt = relay.tcp_totals()
        clients.w1 = m1["t"]
        await asyncio.sleep(plan["drain"])
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctrl.close()
        await relay.close()
    del tcp0
    dur = m1["t"] - m0["t"]
    d = {k: m1[k] - m0[k] for k in m0 if k not in ("t",)}
    cpu = d.pop("cpu")
    payload = d["payload_down"] + d["payload_up"]
    framing = d["framing_down"]
    total = up + down
    out = {}
    if plan["pattern"] == "request_response":
        out["throughput"] = clients.completed / dur
    else:
        out["throughput"] = clients.received / plan["duration"]
    out.update(latency_metrics(clients.lat))
    out["server_cpu_s"] = cpu
    out["server_utilization"] = cpu / dur
    out["requests"] = d["requests"]
    out["responses"] = d["responses"]
    out["bytes_total"] = total
    out["bytes_header"] = total - payload - framing
    out["bytes_payload"] = payload
    out["bytes_framing"] = framing
    out["bytes_handshake"] = 0
    out["bandwidth"] = total / dur
    out["bytes_up"] = up
    out["bytes_down"] = down
    out["bytes_transport"] = hdr
    out["bytes_wire"] = total + hdr
    out["segments"] = so + si
    out["acks"] = (so - do) + (si - di)
    out["connections_opened"] = opened
    out["connections_max"] = peak
    if plan["pattern"] != "request_response":
        out["updates_created"] = d["updates_created"]
        out["updates_delivered"] = clients.received
        out["empty_responses"] = d["empty_responses"]
        out["empty_fraction"] = d["empty_responses"] / d["polls"] if d["polls"] else math.nan
        out["frames"] = d["frames"]
    out["loopback_rtt"] = rtt
    out["client_errors"] = clients.errors
    out["client_lag"] = float(np.mean(clients.lags)) if clients.lags else 0.0
    return out


def run_once(cfg: dict) -> dict:
    """One testbed run of one resolved config: its metrics."""
    server_core, client_cores = _cores()
    plan = plan_of(cfg, server_core)
    _raise_nofile()
    old_aff = None
    if client_cores and hasattr(os, "sched_setaffinity"):
        old_aff = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, client_cores)
        except OSError:
            old_aff = None
    server = ServerProcess(plan)
    try:
        port = server.wait_port()
        limit = plan["warmup"] + plan["duration"] + plan["drain"] + 30.0
        # A plain event loop, not asyncio.run: its SIGINT handler only
        # cancels the main task, which the clients' own clean-up can outlast;
        # here Ctrl-C raises KeyboardInterrupt at once and the finally blocks
        # below close every socket and stop the server.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(_session_run(plan, port), limit))
        finally:
            _close_loop(loop)
    finally:
        server.stop()
        if old_aff is not None:
            os.sched_setaffinity(0, old_aff)


def _close_loop(loop) -> None:
    """Cancel what is left on the loop (bounded), then close it."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            waiter = asyncio.wait(pending, timeout=5.0)
            try:
                loop.run_until_complete(waiter)
            except BaseException:  # noqa: BLE001
                waiter.close()  # never started (e.g. a second Ctrl-C): no warning
                raise
    except BaseException:  # noqa: BLE001 - closing on every path, even a second Ctrl-C
        pass
    finally:
        loop.close()


def _raise_nofile() -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def run_testbed(exp, out_dir: Path, say=print):
    """Every sweep point and replication of ``exp`` on the testbed; writes
    runs.csv, summary.csv and config.resolved.yaml as ``commsim run`` does
    (plus testbed.json: the host's load and what the testbed measured
    instead of using)."""
    from commsim.experiment import output
    from commsim.experiment.runner import make_result
    from commsim.rng import derive_run_seed

    for p in exp.points:  # refuse before anything runs
        plan_of(p.config)
    rows = []
    total = len(exp.points) * exp.replications
    done = 0
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    for p in exp.points:
        for r in range(exp.replications):
            cfg = dict(p.config)
            seed = derive_run_seed(cfg["seed"], r)
            cfg["seed"] = seed % (2 ** 31)
            t = time.monotonic()
            metrics = run_once(cfg)
            done += 1
            params = ", ".join(f"{k}={v}" for k, v in p.params.items())
            say(f"testbed run {done}/{total} ({params or 'base'}, replication {r}): "
                f"{time.monotonic() - t:.1f} s, server CPU {metrics['server_cpu_s']:.3f} s, "
                f"p99 {metrics.get('latency_p99', float('nan')) * 1e3:.1f} ms")
            rows.append({**p.params, "replication": r, "seed": seed, **metrics})
    result = make_result(exp, rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output.write_tables(result, out_dir)
    info = {"host_cpus": os.cpu_count(), "loadavg_before": load0,
            "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "measured_not_used": list(MEASURED),
            "note": "server CPU is the server process's own CPU time (holds under load); "
                    "latencies include waiting for a core the host shares"}
    output.atomic_write(out_dir / "testbed.json", json.dumps(info, indent=1))
    return result, paths
