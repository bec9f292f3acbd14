"""Validation of the multiplexing pattern (issue 5).

* page load round trips with negligible sizes against
  :func:`commsim.theory.page_load_round_trips` (deterministic: exact);
* bytes on the wire against an independent sum of objects, headers
  (compressed where the protocol compresses), framing, packet overhead and
  retransmissions (deterministic: exact);
* the direction of the loss effect (HTTP/2's advantage over HTTP/1.1
  shrinks, HTTP/3 keeps more of it), with paired replications;
* head-of-line accounting, the message ledger, proxies' connection counts
  and CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import commsim.patterns.multiplexing  # noqa: F401  (registers the section)
from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.network.connection import HANDSHAKES
from commsim.network.http import H2_FRAME, H3_FRAME, MAX_FRAME, QUIC_FLIGHTS, QUIC_LAST
from commsim.rng import derive_run_seed
from commsim.theory import page_load_round_trips

RTT = 0.05


def config(protocol="http2", *, latency="25ms", loss=0.0, bandwidth=None, handshake="tls1.3",
           clients=1, think="1000s", duration="2000s", service="0s", tls_cpu="0s", **mx):
    return {"pattern": "multiplexing", "duration": duration,
            "clients": {"count": clients, "mode": "sync", "think_time": think},
            "server": {"service_time": service},
            "network": {"latency": latency, "handshake": handshake, "loss": loss,
                        "bandwidth": bandwidth, "tls_server_cpu": tls_cpu},
            "multiplexing": dict(protocol=protocol, **mx)}


def run(cfg, seed=1, rep=0):
    exp = load(cfg)
    metrics, sim = simulate(exp.points[0].config, derive_run_seed(seed, rep))
    return metrics


def assert_ledger(m):
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]


# ------------------------------------------------------------ round trips ----
# With constant think 1000 s and duration 2000 s a sync client loads exactly
# one page (at t = 1000 s), so page_load_time is that page's load time.
HS_RTTS = {"tcp": 1, "tls1.3": 2, "tls1.2": 3, "none": 0}


@pytest.mark.parametrize("objects,k", [(1, 6), (6, 6), (12, 6), (13, 6), (20, 4), (7, 1)])
@pytest.mark.parametrize("handshake", ["tcp", "tls1.3"])
def test_http1_takes_ceil_n_over_k_round_trips(objects, k, handshake):
    m = run(config("http1", objects=objects, connections_per_host=k, object_size="1B",
                   handshake=handshake))
    rtts = page_load_round_trips("http1", objects, k, HS_RTTS[handshake])
    assert rtts == HS_RTTS[handshake] + math.ceil(objects / min(k, objects))
    # Deterministic: constant latency, no loss, no bandwidth, zero service time.
    assert m["page_load_time"] == pytest.approx(rtts * RTT, abs=1e-9)
    assert m["connections_opened"] == min(k, objects)
    assert_ledger(m)


@pytest.mark.parametrize("objects", [1, 12, 50])
@pytest.mark.parametrize("protocol,handshake,resumption,hs_rtts", [
    ("http2", "tls1.3", False, 2), ("http2", "tcp", False, 1),
    ("http3", "tls1.3", False, 1), ("http3", "tls1.3", True, 0)])
def test_multiplexed_page_takes_one_round_trip(objects, protocol, handshake, resumption,
                                               hs_rtts):
    m = run(config(protocol, objects=objects, object_size="1B", handshake=handshake,
                   resumption=resumption))
    rtts = page_load_round_trips(protocol, objects, handshake_rtts=hs_rtts)
    assert rtts == hs_rtts + 1
    assert m["page_load_time"] == pytest.approx(rtts * RTT, abs=1e-9)
    assert m["connections_opened"] == 1
    assert_ledger(m)


def test_stream_limit_adds_round_trips():
    m = run(config("http2", objects=25, max_streams=10, object_size="1B", handshake="tcp"))
    assert m["page_load_time"] == pytest.approx(
        page_load_round_trips("http2", 25, handshake_rtts=1, max_streams=10) * RTT, abs=1e-9)


def test_pipelining_sends_requests_back_to_back():
    # 12 objects, 2 connections, depth 6: one round of requests after the handshake.
    m = run(config("http1", objects=12, connections_per_host=2, pipelining=6, object_size="1B",
                   handshake="tcp"))
    assert m["page_load_time"] == pytest.approx(2 * RTT, abs=1e-9)


# ----------------------------------------------------------------- bytes ----
def _segments(size, mss=1460):
    return max(1, -(-size // mss))


def expected_bytes(protocol, objects, k, body, handshake="tls1.3", req_h=500, resp_h=300,
                   comp=0.15, overhead=40, mss=1460):
    """Independent sum: every message's bytes plus per-segment overhead."""
    if protocol == "http3":
        flights, last = QUIC_FLIGHTS, QUIC_LAST
    else:
        flights, last = HANDSHAKES[handshake]
    conns = min(k, objects) if protocol == "http1" else 1
    msgs = []  # (size) of every message
    for _ in range(conns):
        msgs += [size for _, size in flights]
    firsts = conns  # first request / response on each connection
    for i in range(objects):
        first = i < firsts
        if protocol == "http1":
            req, resp = req_h, resp_h + body
        else:
            rh = req_h if first else round(req_h * comp)
            sh = resp_h if first else round(resp_h * comp)
            if protocol == "http2":
                req = rh + H2_FRAME
                resp = sh + body + H2_FRAME * (1 + math.ceil(body / MAX_FRAME))
            else:
                req = rh + H3_FRAME
                resp = sh + body + H3_FRAME * (2 if body else 1)
        if first:
            req += last
        msgs += [req, resp]
    return sum(msgs) + overhead * sum(_segments(s, mss) for s in msgs), len(msgs)


@pytest.mark.parametrize("protocol,k", [("http1", 6), ("http1", 3), ("http2", 6), ("http3", 6)])
def test_bytes_on_the_wire_are_exact(protocol, k):
    objects, body = 10, 20000  # 20000 B: 14 segments and two HTTP/2 DATA frames
    m = run(config(protocol, objects=objects, connections_per_host=k, object_size=body))
    total, nmsgs = expected_bytes(protocol, objects, k, body)
    assert m["bytes_total"] == total
    assert m["bytes_payload"] == objects * body
    assert m["bytes_retransmitted"] == 0
    assert m["sent"] == m["delivered"] == nmsgs
    assert m["in_flight"] == 0


@pytest.mark.parametrize("protocol,k", [("http1", 1), ("http1", 6), ("http2", 6), ("http3", 6)])
def test_lossy_bytes_are_lossless_bytes_plus_retransmissions(protocol, k):
    # With several HTTP/1.1 connections, loss can leave a connection with no
    # request to carry its last handshake flight; it then goes alone, in a
    # segment of its own (segment_overhead more bytes).  The seed below shows
    # it for k = 6; the count of such lone flights is read off the ledger.
    objects, body = 10, 20000
    lossless, nmsgs = expected_bytes(protocol, objects, k, body)
    m = run(config(protocol, objects=objects, object_size=body, loss=0.05,
                   connections_per_host=k))
    lone = m["sent"] - nmsgs
    assert lone >= 0 and (lone == 0 or protocol == "http1" and k > 1)
    assert m["retransmissions"] > 0
    lone_bytes = lone * 40  # the flight moves out of a request into its own segment
    assert m["bytes_total"] == lossless + m["bytes_retransmitted"] + lone_bytes
    assert m["in_flight"] == 0 and m["dropped"] == 0
    assert_ledger(m)


def test_header_compression_shrinks_header_bytes_per_request():
    h1 = run(config("http1", objects=20, object_size="1B"))
    h2 = run(config("http2", objects=20, object_size="1B"))
    assert h1["header_bytes_per_request"] == 800
    # first request/response in full, 19 at 15 %: (800 + 19 * (75 + 45)) / 20
    assert h2["header_bytes_per_request"] == pytest.approx((800 + 19 * 120) / 20)


# ------------------------------------------------------- head of line ----
def test_hol_blocking_only_on_shared_tcp_connections():
    kw = dict(objects=40, object_size={"dist": "lognormal", "mean": "6KiB", "cv": 1.5},
              loss=0.03, bandwidth="50Mbps", think="0.5s", duration="20s", dependency=0.8)
    for rep in (1, 2):  # more seeds: h1 and h3 must be exactly 0 whatever the losses
        assert run(config("http1", **kw), rep=rep)["hol_blocked_s"] == 0.0
        assert run(config("http3", **kw), rep=rep)["hol_blocked_s"] == 0.0
    h1, h2, h3 = (run(config(p, **kw)) for p in ("http1", "http2", "http3"))
    assert h1["hol_blocked_s"] == 0.0   # one message at a time per connection
    assert h3["hol_blocked_s"] == 0.0   # QUIC streams are independent
    assert h2["hol_blocked_s"] > 0.0
    for m in (h1, h2, h3):
        assert m["retransmissions"] > 0
        assert_ledger(m)
    piped = run(config("http1", pipelining=4, **kw))
    assert piped["hol_blocked_s"] > 0.0  # responses queue behind each other


# ------------------------------------------------------ loss direction ----
LOSS_KW = dict(objects=40, object_size={"dist": "lognormal", "mean": "6KiB", "cv": 1.5},
               dependency=0.8, bandwidth="50Mbps", think="0.5s")


def _plt(protocol, loss, reps, duration):
    return np.array([run(config(protocol, loss=loss, duration=duration, **LOSS_KW),
                         seed=7, rep=r)["page_load_time"] for r in range(reps)])


def _loss_effect(reps, duration, losses):
    """Paired (same replication seeds) page load times per loss and protocol."""
    return {loss: {p: _plt(p, loss, reps, duration) for p in ("http1", "http2", "http3")}
            for loss in losses}


def _solid(diff):
    """Mean of paired differences more than 3 standard errors above 0
    (t with >= 15 d.f.: a one-sided false positive below 0.5 %)."""
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    return diff.mean() > 3 * se, diff.mean(), se


def test_loss_shrinks_http2_advantage_and_http3_keeps_more():
    # 16 paired replications x 20 s (~15 pages each).  With 10 replications
    # and base seeds 8, 9, 10 the four t statistics were 18-32, 5-8, 5.5-8 and
    # 3.5-5.8, so 16 puts the weakest near 4.4 (t scales with sqrt(n)).
    # Measured with 20 replications x 30 s (docs/multiplexing.md): http2's
    # advantage over http1 +67 ms at 0 % and -110 ms at 3 % loss; http3 over
    # http2 +50 ms at 0 % (its saved handshake round trip), +153 ms at 3 %.
    res = _loss_effect(16, "20s", (0.0, 0.03))
    adv2 = {l: res[l]["http1"] - res[l]["http2"] for l in res}
    adv3 = {l: res[l]["http1"] - res[l]["http3"] for l in res}
    ok, mean, se = _solid(adv2[0.0])
    assert ok, f"http2 should beat http1 without loss: {mean:.4f} +- {se:.4f}"
    ok, mean, se = _solid(adv2[0.0] - adv2[0.03])
    assert ok, f"http2's advantage should shrink with loss: {mean:.4f} +- {se:.4f}"
    ok, mean, se = _solid(adv3[0.03] - adv2[0.03])
    assert ok, f"http3 should keep more of the advantage: {mean:.4f} +- {se:.4f}"
    # ... and more than its handshake saving alone: the gap grows with loss.
    ok, mean, se = _solid((adv3[0.03] - adv2[0.03]) - (adv3[0.0] - adv2[0.0]))
    assert ok, f"http3's edge over http2 should grow with loss: {mean:.4f} +- {se:.4f}"


@pytest.mark.slow
def test_loss_sweep_monotone():
    res = _loss_effect(20, "30s", (0.0, 0.01, 0.02, 0.03))
    losses = sorted(res)
    adv2 = [float(np.mean(res[l]["http1"] - res[l]["http2"])) for l in losses]
    gap = [float(np.mean(res[l]["http2"] - res[l]["http3"])) for l in losses]
    print("advantage http2 over http1:", adv2, "http3 over http2:", gap)
    assert all(a > b for a, b in zip(adv2, adv2[1:]))
    assert all(a < b for a, b in zip(gap, gap[1:]))


# ---------------------------------------------------------------- proxies ----
def test_mux_proxy_funnels_client_connections_onto_one():
    clients, objects = 5, 10
    m = run(config("http1", clients=clients, objects=objects, object_size="1KiB",
                   handshake="none", think="10s", duration="15s", proxy="mux"))
    # Constant think: all clients start together; each opens 6 connections.
    assert m["client_connections_peak"] == clients * 6
    assert m["client_connections_opened"] == clients * 6
    assert m["backend_connections_peak"] == 1 and m["backend_connections_opened"] == 1
    # Proxy CPU: 20 us per request and per response, nothing else (no TLS).
    assert m["proxy_cpu_s"] == pytest.approx(2 * clients * objects * 20e-6, abs=1e-9)
    assert m["proxy_added_mean"] >= 2 * 20e-6 - 1e-12
    assert_ledger(m)


def test_demux_proxy_fans_one_connection_out():
    clients, objects = 5, 10
    m = run(config("http2", clients=clients, objects=objects, object_size="1KiB",
                   handshake="none", think="10s", duration="15s", proxy="demux",
                   backend_connections=30))
    assert m["client_connections_peak"] == clients
    # 50 requests arrive together; the HTTP/1.1 backend pool grows to its limit.
    assert m["backend_connections_peak"] == 30
    assert m["backend_connections_opened"] == 30
    assert m["in_flight"] == 0
    assert_ledger(m)


def test_proxy_adds_latency_and_tls_cpu():
    base = run(config("http2", objects=10, object_size="1KiB"))
    prox = run(config("http2", objects=10, object_size="1KiB", proxy="mux", tls_cpu="0.5ms"))
    # One client: the backend hop (2 x 0.5 ms) plus proxy CPU and the backend
    # handshake (tls1.3, 2 backend round trips, first page only) are added.
    assert prox["page_load_time"] > base["page_load_time"] + 2 * 0.5e-3
    # The proxy terminates the client's TLS: 0.5 ms per client handshake.
    assert prox["proxy_cpu_s"] == pytest.approx(0.5e-3 + 2 * 10 * 20e-6, abs=1e-9)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        load(config("http2", proxy="mux", backend_protocol="spdy"))
    assert "multiplexing.backend_protocol" in str(err.value) and "http1" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(config("http1", connections_per_host=0))
    assert "multiplexing.connections_per_host" in str(err.value)


def test_same_seed_same_results():
    kw = dict(objects=20, loss=0.02, bandwidth="20Mbps", think="0.5s", duration="10s")
    assert run(config("http2", **kw)) == run(config("http2", **kw))


# -------------------------------------------------------------- workloads ----
def test_api_workload_reuses_connections_and_compresses_headers():
    cfg = config("http2", workload="api", object_size="2KiB", duration="20s", clients=4)
    cfg["clients"] = {"count": 4, "mode": "async", "rate": "20/s"}
    m = run(cfg)
    # Persistent connections: one per client, one handshake each.
    assert m["connections_opened"] == 4 and m["handshakes"] == 4
    assert math.isnan(m["page_load_time"])
    # ~1600 requests; only the first on each connection carries full headers:
    # (4 * 800 + (n - 4) * 120) / n = 120 + 2720 / n.  n here counts requests
    # sent in the window, the metric those completed: they differ by the few
    # in flight at the end (~4 x 20/s x 50 ms), hence 1 %.
    n = m["requests"]
    assert n > 1000
    assert m["header_bytes_per_request"] == pytest.approx(120 + 2720 / n, rel=0.01)
    assert m["latency_mean"] == pytest.approx(m["object_latency_mean"])
    assert_ledger(m)


def test_warm_connections_handshake_once():
    kw = dict(objects=10, object_size="1KiB", think="1s", duration="10s", clients=3)
    cold = run(config("http1", **kw))
    warm = run(config("http1", warm_connections=True, **kw))
    assert warm["client_connections_opened"] == 3 * 6
    assert cold["client_connections_opened"] > 3 * 6
    # Warm pages skip the two TLS round trips (and slow start restarts).
    assert warm["page_load_time"] < cold["page_load_time"] - 2 * RTT * 0.5


def test_async_cold_pages_keep_their_own_connections():
    cfg = config("http2", objects=8, object_size="4KiB", duration="10s", clients=2)
    cfg["clients"] = {"count": 2, "mode": "async", "rate": "5/s"}
    m = run(cfg)
    # Every page opens (and completes) its own connection; pages overlap.
    assert m["client_connections_opened"] == pytest.approx(m["throughput"] * 10, abs=3)
    assert m["client_connections_peak"] >= 2
    assert_ledger(m)


def test_keepalive_false_is_refused_naming_warm_connections():
    from commsim.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load({"pattern": "multiplexing", "network": {"keepalive": False}})
    assert e.value.key == "network.keepalive" and "warm_connections" in str(e.value)


def test_max_retries_is_refused_since_the_transport_never_gives_up():
    """The segment transport retransmits until delivered: network.max_retries
    would be accepted and do nothing, so it is refused naming the key."""
    from commsim.config import load
    from commsim.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        load({"pattern": "multiplexing", "network": {"loss": 0.01, "max_retries": 2}})
    assert exc.value.key == "network.max_retries"
    load({"pattern": "multiplexing", "network": {"loss": 0.01}})  # the default is fine
