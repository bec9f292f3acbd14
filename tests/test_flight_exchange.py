"""The shared handshake flight walker (commsim.network.connection.FlightExchange)
on constant-latency links: exact round trips, bytes and server work."""

import pytest

from commsim.engine import Simulation, call_later
from commsim.network import Link, Message
from commsim.network.connection import HANDSHAKES, FlightExchange, hello_index


def _run(mode, server_work_s=0.0):
    sim = Simulation({"warmup": 0.0, "duration": 5.0}, 1)
    up = Link(sim, "up", 0.010)
    down = Link(sim, "down", 0.010)
    done_at = []
    hello_seen = []

    def send(direction, size, label, deliver, exchange):
        link = up if direction == "up" else down
        link.send(Message("handshake", "c", "s", handshake=size, created=sim.now,
                          data=exchange, label=label), deliver)

    def work(resume):
        hello_seen.append(sim.now)
        call_later(sim.env, server_work_s, lambda _e: resume())

    flights, last = HANDSHAKES[mode]
    x = FlightExchange(flights, last, send, lambda extra: done_at.append((sim.now, extra)),
                       hello=hello_index(mode), server_work=work)
    x.step()
    sim.run()
    return sim, done_at, hello_seen


@pytest.mark.parametrize("mode,rtts", [("tcp", 1), ("tls1.3", 2), ("tls1.2", 3)])
def test_a_handshake_takes_its_round_trips_and_exact_bytes(mode, rtts):
    sim, done_at, hello = _run(mode)
    flights, last = HANDSHAKES[mode]
    assert done_at == [(pytest.approx(rtts * 0.020, abs=1e-12), last)]
    assert sim.bytes.handshake == sum(size for _d, size in flights)
    assert hello == ([] if mode == "tcp" else [pytest.approx(0.030, abs=1e-12)])


def test_server_work_on_the_client_hello_delays_the_rest():
    _sim, done_at, hello = _run("tls1.3", server_work_s=0.001)
    assert hello == [pytest.approx(0.030, abs=1e-12)]
    assert done_at[0][0] == pytest.approx(0.041, abs=1e-12)


def test_resend_sends_the_current_flight_again():
    sim = Simulation({"warmup": 0.0, "duration": 1.0}, 1)
    sent = []
    x = FlightExchange([("up", 60), ("down", 60)], 52,
                       lambda d, size, label, deliver, ex: sent.append(label), lambda extra: None)
    x.step()
    x.resend()
    assert sent == ["handshake 1", "handshake 1"]
