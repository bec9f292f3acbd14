"""Request-response: byte accounting, encodings, chunked uploads, connections."""

import math

import pytest

import commsim
from commsim.network.connection import HANDSHAKES


def run(cfg, **top):
    base = {"pattern": "request_response", "duration": 10, **top}
    for k, v in cfg.items():
        section, _, key = k.partition(".")
        base.setdefault(section, {})[key] = v
    return commsim.run(base).runs.iloc[0]


def test_header_and_payload_bytes_are_exact():
    """Constant sizes: every request/response carries exactly its headers and body."""
    row = run({"clients.count": 20, "request_response.request_header": "400B",
               "request_response.request_body": "100B", "request_response.response_header": "300B",
               "request_response.response_body": "2KiB"})
    assert row["requests"] > 100
    assert row["bytes_header"] == 400 * row["requests"] + 300 * row["responses"]
    assert row["bytes_payload"] == 100 * row["requests"] + 2048 * row["responses"]
    assert row["bytes_total"] == row["bytes_header"] + row["bytes_payload"]
    assert row["bandwidth"] == row["bytes_total"] / 10


@pytest.mark.parametrize("encoding,factor", [("json", 1.0), ("xml", 1.6), ("protobuf", 0.4)])
def test_encoding_scales_body_and_costs_server_cpu(encoding, factor):
    cfg = {"clients.count": 5, "request_response.response_body": "10000B",
           "request_response.encoding": encoding, "server.service_time": "1ms"}
    plain = run({**cfg, "request_response.encoding": "none"})
    row = run(cfg)
    assert row["bytes_payload"] == round(10000 * factor) * row["responses"]
    # Server CPU per request = service + serialise the response body at the preset rate.
    from commsim.network.encoding import Encoding
    per = 0.001 + Encoding(encoding).cpu(round(10000 * factor))
    assert row["server_cpu_s"] / row["responses"] == pytest.approx(per, rel=0.01)
    assert plain["server_cpu_s"] / plain["responses"] == pytest.approx(0.001, rel=0.01)


def test_chunked_upload_one_request_per_chunk():
    body, chunk = 100_000, 16_384
    row = run({"clients.count": 4, "request_response.request_body": f"{body}B",
               "request_response.chunk_size": f"{chunk}B", "network.latency": "10ms",
               "server.service_time": "1ms"})
    chunks = math.ceil(body / chunk)
    # Every chunk is a request; uploads in flight at the window edges make the ratio inexact.
    assert row["requests"] / row["throughput"] / 10 == pytest.approx(chunks, rel=0.05)
    # Latency of an upload: per chunk one RTT (20 ms) plus 1 ms service (no queueing at 4 clients
    # mostly), so about chunks x 21 ms.
    assert row["latency_mean"] == pytest.approx(chunks * 0.021, rel=0.05)


@pytest.mark.parametrize("mode,rtts", [("tcp", 1), ("tls1.3", 2), ("tls1.2", 3)])
def test_handshake_round_trips_and_keepalive(mode, rtts):
    """Without keep-alive every request pays the handshake's round trips."""
    common = {"clients.count": 5, "clients.think_time": "200ms", "network.latency": "25ms", "server.service_time": "0.1ms",
              "network.handshake": mode, "network.tls_server_cpu": "0s"}
    fresh = run({**common, "network.keepalive": False})
    # With keep-alive only a client's first request pays the handshake: the warm-up hides it.
    kept = run({**common, "network.keepalive": True}, warmup=1)
    rtt = 0.05
    assert fresh["latency_mean"] == pytest.approx((1 + rtts) * rtt + 0.0001, rel=0.01)
    assert kept["latency_mean"] == pytest.approx(rtt + 0.0001, rel=0.02)
    flights, last = HANDSHAKES[mode]
    per_hs = sum(size for _, size in flights) + last
    assert fresh["handshakes"] == pytest.approx(fresh["requests"], abs=5)
    assert fresh["bytes_handshake"] == pytest.approx(per_hs * fresh["handshakes"], rel=0.01)
    assert kept["handshakes"] == 0 and kept["bytes_handshake"] == 0


def test_bandwidth_serialises_messages():
    """One client, 1 Mbps: a 12,500-byte response takes 0.1 s on the wire."""
    row = run({"clients.count": 1, "clients.think_time": "1s", "network.bandwidth": "1Mbps",
               "request_response.request_header": "0B", "request_response.response_header": "0B",
               "request_response.response_body": "12500B", "server.service_time": "0s"}, duration=20)
    assert row["latency_mean"] == pytest.approx(0.1, rel=1e-6)


def test_loss_retransmits_and_ledger_balances():
    row = run({"clients.count": 50, "network.loss": 0.1, "network.latency": "10ms",
               "network.rto": "200ms", "network.max_retries": 1, "clients.think_time": "100ms"})
    assert row["bytes_retransmitted"] > 0
    assert row["dropped"] > 0
    assert row["sent"] == row["delivered"] + row["dropped"] + row["in_flight"]


def test_sync_blocked_vs_async():
    sync = run({"clients.count": 10, "clients.mode": "sync", "network.latency": "50ms",
                "clients.think_time": "100ms"})
    asyn = run({"clients.count": 10, "clients.mode": "async", "clients.rate": "10/s",
                "network.latency": "50ms"})
    assert asyn["client_blocked_s"] == 0
    # A sync client is blocked for one RTT (+ service) out of every RTT + think.
    expect = (0.1 + 0.001) / (0.1 + 0.001 + 0.1)
    assert sync["client_blocked_fraction"] == pytest.approx(expect, rel=0.05)


@pytest.mark.parametrize("pattern", ["request_response", "sync_async"])
def test_messages_given_up_on_are_retried_so_no_client_freezes(pattern):
    """With every fifth transmission lost and no retransmission, a link gives
    up on ~20% of messages; the sender re-sends, so sync clients keep cycling:
    each of 20 clients (think 100 ms) completes operations throughout the run
    instead of blocking forever on its first lost message."""
    row = commsim.run({"pattern": pattern, "duration": 20, "warmup": 2,
                       "clients": {"count": 20, "think_time": "100ms"},
                       "network": {"latency": "5ms", "loss": 0.2, "max_retries": 0,
                                   "handshake": "tls1.3", "keepalive": False,
                                   "tls_server_cpu": "0s"}}).runs.iloc[0]
    assert row["dropped"] > 100
    assert row["sent"] == row["delivered"] + row["dropped"] + row["in_flight"]
    # A frozen client would be blocked for the whole window (fraction -> 1).
    assert row["client_blocked_fraction"] < 0.9
    assert row["throughput"] * 20 > 20 * 10  # at least ~10 operations per client
