"""The network parts on their own: the link factory, lossy and ordered links,
the handshake module.  SimPy-style tiny scenarios with exact outcomes: the
loss draws are replaced by a fixed script, so every delay is known."""

from __future__ import annotations

import pytest

import commsim
from commsim.engine import Simulation
from commsim.network import Message, Network, loopback_link, network_link
from commsim.network.connection import (HANDSHAKES, Connections, handshake_bytes,
                                        round_trips)
from commsim.nodes import Cpu


def make_sim(**network) -> Simulation:
    cfg = {"pattern": "request_response", "duration": 100, "warmup": 0,
           "network": network}
    return Simulation(commsim.load(cfg).points[0].config, 1)


def script(link, outcomes):
    """Replace the link's loss draws: True = this transmission is lost."""
    it = iter(outcomes)
    link._uniform = lambda: 0.0 if next(it) else 1.0


def test_factory_applies_the_network_section():
    sim = make_sim(latency="10ms", bandwidth="8Kbps", loss=0.1, rto="300ms", max_retries=2)
    link = network_link(sim, "x")
    assert (link.constant_latency, link.bandwidth, link.loss, link.rto, link.max_retries) == \
        (0.01, 8000.0, 0.1, 0.3, 2)


def test_factory_explicit_hop_does_not_inherit_the_network():
    sim = make_sim(latency="10ms", bandwidth="8Kbps", loss=0.1)
    dc = network_link(sim, "dc", {"latency": 0.0005})
    assert (dc.constant_latency, dc.bandwidth, dc.loss) == (0.0005, None, 0.0)
    lo = loopback_link(sim, "lo")
    assert (lo.constant_latency, lo.bandwidth, lo.loss) == (0.0, None, 0.0)
    over = network_link(sim, "o", latency=0.002)
    assert (over.constant_latency, over.loss) == (0.002, 0.1)
    with pytest.raises(TypeError):
        network_link(sim, "bad", lossy=True)


def test_lossy_link_delivers_each_message_once_with_the_expected_delays():
    # latency 10 ms, rto 200 ms: message A lost twice then through (arrives
    # at 2 x 0.2 + 0.01), B through at once (0.01), C lost 3 times = beyond
    # max_retries 2: dropped at 3 x 0.2 = 0.6 s, never delivered.
    sim = make_sim(latency="10ms", loss=0.5, rto="200ms", max_retries=2)
    link = network_link(sim, "l")
    script(link, [True, True, False, False, True, True, True])
    got, dropped = [], []
    link.on_drop = lambda m: dropped.append((m.label, sim.now))
    for label in "ABC":
        link.send(Message("request", 0, 1, header=100, label=label),
                  lambda m: got.append((m.label, sim.now)))
    sim.env.run(until=5)
    assert got == [("B", pytest.approx(0.01)), ("A", pytest.approx(0.41))]
    assert dropped == [("C", pytest.approx(0.6))]
    b = sim.bytes
    assert (b.sent, b.delivered, b.dropped) == (3, 2, 1)
    # 3 first transmissions + 2 (A) + 2 (C) retransmissions of 100 bytes
    assert b.header == 700 and b.retransmitted == 400
    assert link.pending() == 0


def test_ordered_stream_head_of_line_blocking():
    # Frames 1, 2, 3 on one stream, 1 ms apart; frame 1 is lost once (rto
    # 200 ms): it arrives at 0.2 + 0.01, and frames 2 and 3, through at once,
    # wait behind it.  A frame of another stream is not held back.
    sim = make_sim(latency="10ms", loss=0.5, rto="200ms", max_retries=5)
    link = network_link(sim, "s")
    script(link, [True, False, False, False, False])
    got = []

    def send(label, stream):
        link.send_ordered(Message("event", 0, 1, payload=10, label=label),
                          lambda m: got.append((m.label, round(sim.now, 9))), stream)

    for k, label in enumerate(["1", "2", "3"]):
        sim.env.timeout(k * 0.001).callbacks.append(lambda _e, lb=label: send(lb, "c0"))
    sim.env.timeout(0.0015).callbacks.append(lambda _e: send("other", "c1"))
    sim.env.run(until=5)
    assert got == [("other", 0.0115), ("1", 0.21), ("2", 0.21), ("3", 0.21)]
    assert (sim.bytes.sent, sim.bytes.delivered) == (4, 4)


@pytest.mark.parametrize("mode", ["tcp", "tls1.2", "tls1.3"])
def test_handshake_takes_k_round_trips_and_exact_bytes(mode):
    # One-way latency 10 ms: a handshake of k round trips is ready after
    # k x 20 ms plus, for TLS, the server's tls_server_cpu (1 ms) on receipt
    # of the ClientHello.  Bytes: every flight, exactly, under `handshake`.
    tls = {"tls_server_cpu": "1ms"} if mode.startswith("tls") else {}  # refused without TLS
    sim = make_sim(latency="10ms", handshake=mode, **tls)
    net = Network(sim)
    cpu = Cpu(sim, "server", 1)
    conns = Connections(sim, net, cpu)
    ready = []
    conns.ensure(7, lambda extra: ready.append((sim.now, extra)))
    sim.env.run(until=5)
    k = {"tcp": 1, "tls1.3": 2, "tls1.2": 3}[mode]
    assert round_trips(mode) == k
    tls = 0.001 if mode.startswith("tls") else 0.0
    (t, extra), = ready
    assert t == pytest.approx(k * 0.02 + tls)
    assert extra == HANDSHAKES[mode][1]
    up, down = handshake_bytes(mode)
    assert sim.bytes.handshake == up + down - extra  # the last flight rides with the request
    assert up + down == {"tcp": 172, "tls1.3": 4763, "tls1.2": 4929}[mode]
    assert cpu.account.total == pytest.approx(tls)
    # keep-alive: the open connection is reused, no second handshake
    conns.ensure(7, lambda extra: ready.append((sim.now, extra)))
    assert ready[-1] == (sim.now, 0)
    conns.close(7)
    conns.ensure(7, lambda extra: ready.append((sim.now, extra)))
    sim.env.run(until=10)
    assert len(ready) == 3 and conns.handshakes == 2


def test_lost_handshake_flight_is_sent_again():
    # The SYN is lost beyond max_retries 0 (dropped at rto 100 ms); the client
    # sends it again at once: ready at 0.1 + 0.02 (tcp, 10 ms one way).
    sim = make_sim(latency="10ms", handshake="tcp", loss=0.5, rto="100ms", max_retries=0)
    net = Network(sim)
    conns = Connections(sim, net)
    net.up.on_drop = net.down.on_drop = conns.dropped
    script(net.up, [True, False])
    script(net.down, [False])
    ready = []
    conns.ensure(1, lambda extra: ready.append(sim.now))
    sim.env.run(until=5)
    assert ready == [pytest.approx(0.12)]
    assert (sim.bytes.sent, sim.bytes.delivered, sim.bytes.dropped) == (3, 2, 1)
