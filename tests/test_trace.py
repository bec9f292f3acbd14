"""Tests for commsim.experiment.trace (curl -v trace, sequence diagram) and
commsim.experiment.plots (figure helpers, request-response figures)."""

from __future__ import annotations

import itertools
import math
import re
import types

import numpy as np
import pandas as pd
import pytest

import commsim
from commsim.experiment import plots, trace
from commsim.experiment.runner import simulate
from commsim.patterns import registry
from commsim.rng import derive_run_seed

registry()  # pattern sections (request_response.*) register on import

PNG = b"\x89PNG\r\n\x1a\n"
SEND = re.compile(r"^\[\s*\d+\.\d{6} s\] (.+?) => (.+?)  (.+) \((.+)\)$")
RECV = re.compile(r"^\[\s*\d+\.\d{6} s\] (.+?) <= (.+?)  (.+) arrived after [\d.]+ ms "
                  r"\(connection (?:#\d+|\?)\)$")
TIME = re.compile(r"^\[\s*(\d+\.\d{6}) s\]")


def _config(**network):
    raw = {"pattern": "request_response", "duration": "2s", "clients": {"count": 3},
           "network": {"latency": "20ms", **network},
           "request_response": {"request_body": "3KiB", "chunk_size": "2KiB"}}
    return commsim.load(raw).points[0].config


def _blocks(text: str) -> list[list[str]]:
    """Split the trace into event blocks (a timestamped line and what follows)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if TIME.match(line):
            blocks.append([line])
        elif blocks and not line.startswith("== Info"):
            blocks[-1].append(line)
    return blocks


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True


# ------------------------------------------------------------------ tracer --

@pytest.mark.parametrize("network", [{}, {"handshake": "tls1.3", "keepalive": False},
                                     {"latency": {"dist": "exponential", "mean": "20ms"},
                                      "loss": 0.2, "handshake": "tcp"}])
@pytest.mark.parametrize("limit", [5, 100_000])
@pytest.mark.parametrize("client", [None, 1])
def test_tracer_does_not_change_results(network, limit, client):
    cfg = _config(**network)
    seed = derive_run_seed(cfg["seed"], 0)
    plain, _ = simulate(cfg, seed)
    tracer = trace.Tracer(limit, client=client)
    traced, sim = simulate(cfg, seed, tracer)
    assert _same(plain, traced)
    if client is not None:
        assert tracer.records and all(1 in (r.src, r.dst) for r in tracer.records)
        return
    assert len(tracer.records) == min(limit, plain["sent"])
    if limit == 5 and "loss" not in network:
        assert tracer.complete and tracer.sent is trace._noop  # hooks are no-ops once done


def test_trace_shows_limit_messages_in_time_order(tmp_path):
    cfg = _config()
    text, _ = trace.trace(cfg, 7, tmp_path)
    lines = text.splitlines()
    assert sum(bool(SEND.match(x)) for x in lines) == 7
    assert sum(bool(RECV.match(x)) for x in lines) == 7  # no loss: every one arrives
    times = [float(m.group(1)) for x in lines if (m := TIME.match(x))]
    assert times == sorted(times)


def test_header_lines_come_before_body_lines(tmp_path):
    text, _ = trace.trace(_config(handshake="tls1.3"), 12, tmp_path)
    blocks = _blocks(text)
    assert blocks
    saw_data = False
    for block in blocks:
        parts = [re.match(r"^(=>|<=) (Send|Recv) (\w+), (\d+) bytes$", x) for x in block[1:]]
        assert all(parts), block
        names = [m.group(3) for m in parts]
        order = {"handshake": 0, "header": 1, "framing": 2, "data": 3}
        assert [order[n] for n in names] == sorted(order[n] for n in names), block
        if "data" in names:
            saw_data = True
            assert "header" in names
        if "header" not in names:  # only a pure handshake flight omits its header line
            assert names == ["handshake"], block
        assert all(int(m.group(4)) > 0 for m, n in zip(parts, names) if n != "header")
    assert saw_data


def test_tls13_handshake_flights_shown(tmp_path):
    text, _ = trace.trace(_config(handshake="tls1.3", keepalive=False), 6, tmp_path)
    lines = text.splitlines()
    assert "=> Send handshake, 60 bytes" in lines
    assert "=> Send handshake, 517 bytes" in lines
    assert "=> Send handshake, 4000 bytes" in lines
    assert "<= Recv handshake, 4000 bytes" in lines
    assert any("TLS 1.3 ClientHello" in x for x in lines)
    # the client's last flight rides along with the first request
    assert "=> Send handshake, 126 bytes" in lines
    send = [SEND.match(x) for x in lines if SEND.match(x)]
    assert [m.group(3) for m in send[:4]] == [f"handshake {i}" for i in range(1, 5)]
    assert send[4].group(3).startswith("request")


def test_no_handshake_lines_without_handshake(tmp_path):
    text, _ = trace.trace(_config(), 6, tmp_path)
    assert "handshake" not in text


def test_trace_stops_early_and_writes_figure(tmp_path):
    cfg = commsim.load({"pattern": "request_response", "duration": "100000s",
                        "clients": {"count": 3}}).points[0].config
    tracer, sim, _ = trace.run_traced(cfg, 4)
    assert tracer.complete
    assert sim.env.now < 100  # stopped long before the end of the window
    text, path = trace.trace(cfg, 4, tmp_path / "out")
    assert path == tmp_path / "out" / "trace.png"
    assert path.read_bytes()[:8] == PNG


def test_trace_with_few_messages_says_so(tmp_path):
    cfg = commsim.load({"pattern": "request_response", "duration": "0.05s",
                        "clients": {"count": 2, "think_time": "10ms"},
                        "network": {"latency": "20ms"}}).points[0].config
    text, path = trace.trace(cfg, 50, tmp_path)
    assert "sent only" in text
    assert path.exists()


def test_sequence_figure_merges_many_clients(tmp_path):
    cfg = commsim.load({"pattern": "request_response", "duration": "5s",
                        "clients": {"count": 50, "think_time": "50ms"},
                        "network": {"latency": "20ms"}}).points[0].config
    tracer, sim, _ = trace.run_traced(cfg, 40)
    names, where = trace._lifelines(tracer.records)
    assert names[-1] == "server"
    assert "other clients" in names and len(names) == 8
    fig = trace.sequence_figure(tracer.records, "t", sim.now)
    from commsim.experiment.output import save_figure

    assert save_figure(fig, tmp_path / "seq.png").read_bytes()[:8] == PNG


def test_cli_trace(tmp_path, capsys):
    from commsim.cli import main

    cfg = tmp_path / "rr.yaml"
    cfg.write_text("pattern: request_response\nduration: 2s\nclients: {count: 2}\n"
                   "network: {latency: 10ms, handshake: tcp}\n")
    assert main(["trace", str(cfg), "--limit", "3", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert out.count(" => ") == 3
    assert (tmp_path / "o" / "trace.png").exists()


# ------------------------------------------- names, filters, connection ids --

def _tiny(**network):
    """Two closed-loop clients in lock-step: each thinks exactly 100 ms, the
    one core serves a request in exactly 1 ms, every hop takes exactly 10 ms;
    a new TCP connection per request.  Every time below follows by hand."""
    raw = {"pattern": "request_response", "duration": "1s", "seed": 1,
           "clients": {"count": 2, "think_time": "100ms"},
           "server": {"service_time": "1ms"},
           "network": {"latency": "10ms", "handshake": "tcp", "keepalive": False, **network},
           "request_response": {"response_body": "1KiB"}}
    return commsim.load(raw).points[0].config


def _events(text: str) -> list[str]:
    return [x for x in text.splitlines() if TIME.match(x) or x.startswith("== Info: connection #")]


def test_client_filter_exact_lines():
    cfg = _tiny()
    tracer, _, seed = trace.run_traced(cfg, 6, client=1)
    # Both clients open a connection at 0.100 s (client 0 first: #1, client 1:
    # #2).  SYN 10 ms, SYN-ACK 10 ms, the request (carrying the ACK) 10 ms:
    # both requests reach the server at 0.130 s; client 0's is served first
    # (0.130-0.131), client 1's waits for it (0.131-0.132), its response
    # arrives at 0.142 s.  After 100 ms of thinking client 1 opens its next
    # connection at 0.242 s; client 0 opened #3 at 0.241 s (its response
    # arrived at 0.141 s), so client 1's is #4.
    assert _events(tracer.text(cfg, seed)) == [
        "== Info: connection #2: client 1 <-> server",
        "[   0.100000 s] client 1 => server  handshake 1 (up, connection #2)",
        "[   0.110000 s] server <= client 1  handshake 1 arrived after 10.000 ms (connection #2)",
        "[   0.110000 s] server => client 1  handshake 2 (down, connection #2)",
        "[   0.120000 s] client 1 <= server  handshake 2 arrived after 10.000 ms (connection #2)",
        "[   0.120000 s] client 1 => server  request (up, connection #2)",
        "[   0.130000 s] server <= client 1  request arrived after 10.000 ms (connection #2)",
        "[   0.132000 s] server => client 1  response (down, connection #2)",
        "[   0.142000 s] client 1 <= server  response arrived after 10.000 ms (connection #2)",
        "== Info: connection #4: client 1 <-> server",
        "[   0.242000 s] client 1 => server  handshake 1 (up, connection #4)",
        "[   0.252000 s] server <= client 1  handshake 1 arrived after 10.000 ms (connection #4)",
        "[   0.252000 s] server => client 1  handshake 2 (down, connection #4)",
        "[   0.262000 s] client 1 <= server  handshake 2 arrived after 10.000 ms (connection #4)",
    ]
    assert "first 6 message(s) of client 1 in send order" in tracer.text(cfg, seed)


def test_connection_filter_exact_lines():
    cfg = _tiny()
    tracer, _, seed = trace.run_traced(cfg, 4, connection=3)
    # Connection #3 is client 0's second: its response arrived at 0.141 s
    # (served first, 0.130-0.131), it thinks 100 ms and opens at 0.241 s.
    # Its request reaches the server at 0.271 s, client 1's (#4) at 0.272 s:
    # no waiting this time, served 0.271-0.272.
    assert _events(tracer.text(cfg, seed)) == [
        "== Info: connection #3: client 0 <-> server",
        "[   0.241000 s] client 0 => server  handshake 1 (up, connection #3)",
        "[   0.251000 s] server <= client 0  handshake 1 arrived after 10.000 ms (connection #3)",
        "[   0.251000 s] server => client 0  handshake 2 (down, connection #3)",
        "[   0.261000 s] client 0 <= server  handshake 2 arrived after 10.000 ms (connection #3)",
        "[   0.261000 s] client 0 => server  request (up, connection #3)",
        "[   0.271000 s] server <= client 0  request arrived after 10.000 ms (connection #3)",
        "[   0.272000 s] server => client 0  response (down, connection #3)",
        "[   0.282000 s] client 0 <= server  response arrived after 10.000 ms (connection #3)",
    ]


def test_connection_ids_do_not_depend_on_the_filter():
    cfg = _tiny()
    everything, _, _ = trace.run_traced(cfg, 30)
    only, _, _ = trace.run_traced(cfg, 8, client=0)
    by_time = {(r.t_sent, r.kind, r.src, r.dst): r.conn for r in everything.records}
    assert [by_time[(r.t_sent, r.kind, r.src, r.dst)] for r in only.records] == [r.conn for r in only.records]
    assert [r.conn for r in only.records] == [1, 1, 1, 1, 3, 3, 3, 3]


def test_keepalive_keeps_one_connection_per_client():
    cfg = _tiny(keepalive=True)
    tracer, _, _ = trace.run_traced(cfg, 12)
    conns = {}
    for r in tracer.records:
        client = r.src if isinstance(r.src, int) else r.dst
        conns.setdefault(client, set()).add(r.conn)
    assert conns == {0: {1}, 1: {2}}


def test_no_handshake_pairs_share_an_id_and_say_so():
    cfg = _tiny(handshake="none", keepalive=True)  # keepalive: false needs a handshake
    tracer, _, seed = trace.run_traced(cfg, 4)
    text = tracer.text(cfg, seed)
    assert "a pair of ends shares one connection id" in text
    assert {(r.src, r.dst, r.conn) for r in tracer.records} == {
        (0, "server", 1), (1, "server", 2), ("server", 0, 1), ("server", 1, 2)}


def test_node_names():
    names = trace.Names()

    class Publisher:
        def __init__(self, idx):
            self.idx = idx

    class Named:
        name = "broker-a"

    class Bare:
        pass

    a, b = Bare(), Bare()
    assert [names(7), names("server"), names(Named()), names(Publisher(3)), names(a), names(b),
            names(a)] == ["client 7", "server", "broker-a", "publisher 3", "bare 0", "bare 1", "bare 0"]
    assert [trace.client_id(x) for x in (7, "client 4", "client12", "server", True)] == [7, 4, 12, None, None]


def test_pubsub_trace_has_human_names(tmp_path):
    cfg = commsim.load({"pattern": "pubsub", "duration": "2s"}).points[0].config
    text, _ = trace.trace(cfg, 12, tmp_path)
    assert "object at 0x" not in text
    ends = {m.group(1) for x in text.splitlines() if (m := SEND.match(x))} | \
        {m.group(2) for x in text.splitlines() if (m := SEND.match(x))}
    assert "broker" in ends
    assert all(re.fullmatch(r"broker|publisher \d+|consumer \d+", e) for e in ends), ends
    assert all(re.search(r"connection #\d+\)$", x) for x in text.splitlines() if SEND.match(x))


def test_cli_trace_filters(tmp_path, capsys):
    from commsim.cli import main

    cfg = tmp_path / "rr.yaml"
    cfg.write_text("pattern: request_response\nduration: 2s\nclients: {count: 3}\n"
                   "network: {latency: 10ms, handshake: tcp}\n")
    assert main(["trace", str(cfg), "--limit", "4", "--client", "2", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    sends = [m for x in out.splitlines() if (m := SEND.match(x))]
    assert len(sends) == 4 and all("client 2" in (m.group(1), m.group(2)) for m in sends)
    assert main(["trace", str(cfg), "--connection", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--connection" in capsys.readouterr().err


# ------------------------------------------------------------------- plots --

KEYS = ["request_response.encoding", "request_response.chunk_size", "network.keepalive",
        "clients.count"]
VALUES = [["none", "json", "xml", "protobuf"], [None, 65536.0], [True, False], [10, 50]]
METRICS = ["latency_mean", "latency_p99", "bandwidth", "bytes_header", "bytes_payload",
           "bytes_handshake", "bytes_framing", "server_cpu_s", "server_utilization",
           "throughput", "handshakes"]


def _fake_result(keys):
    idx = [KEYS.index(k) for k in keys]
    rng = np.random.default_rng(1)
    rows = []
    for combo in itertools.product(*(VALUES[i] for i in idx)):
        row = dict(zip(keys, combo))
        row["replications"] = 3
        for m in METRICS:
            row[m] = float(rng.uniform(0.1, 1.0)) * (1e4 if m.startswith("b") else 1.0)
            row[f"{m}_ci95"] = row[m] * 0.1 if m != "throughput" else math.nan
        rows.append(row)
    summary = pd.DataFrame(rows, columns=[*keys, "replications",
                                          *[c for m in METRICS for c in (m, f"{m}_ci95")]])
    exp = types.SimpleNamespace(resolved={"duration": 10.0})
    return types.SimpleNamespace(params=list(keys), summary=summary, experiment=exp)


def test_plot_helpers_write_files(tmp_path):
    from commsim.experiment.output import save_figure

    s = _fake_result(KEYS[:3]).summary
    paths = [
        save_figure(plots.bar_plot(s, KEYS[0], "latency_mean", KEYS[2], scale=1e3,
                                   ylabel="ms"), tmp_path / "bar.png"),
        save_figure(plots.line_plot(_fake_result([KEYS[3], KEYS[0]]).summary, KEYS[3],
                                    "throughput", KEYS[0], logx=True), tmp_path / "line.png"),
        save_figure(plots.bar_plot(s, KEYS[0], "bandwidth", errorbars=False), tmp_path / "b2.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG


def test_plot_helpers_reject_ambiguous_rows():
    s = _fake_result(KEYS[:2]).summary
    with pytest.raises(ValueError):
        plots.bar_plot(s, KEYS[0], "latency_mean", facet=[])


def test_value_labels():
    assert plots.value_label("request_response.chunk_size", math.nan) == "no chunking"
    assert plots.value_label("request_response.chunk_size", 65536.0) == "64 KiB"
    assert plots.value_label("network.keepalive", False) == "new per request"
    assert plots.value_label("clients.count", 50) == "50"
    assert plots.value_label("request_response.encoding", "xml") == "xml"


@pytest.mark.parametrize("keys,expected", [
    (KEYS, {"latency_by_encoding.png", "bandwidth_by_encoding.png", "server_cpu_by_encoding.png",
            "latency_keepalive.png", "latency_by_chunk_size.png", "latency_vs_clients.png",
            "throughput_vs_clients.png", "bytes_by_category.png"}),
    (KEYS[:1], {"latency_by_encoding.png", "bandwidth_by_encoding.png",
                "server_cpu_by_encoding.png", "bytes_by_category.png"}),
    ([KEYS[2]], {"latency_keepalive.png", "bytes_by_category.png"}),
    ([], {"bytes_by_category.png"}),
])
def test_request_response_figures(tmp_path, keys, expected):
    from commsim.figures.request_response import request_response_figures

    paths = request_response_figures(_fake_result(keys), tmp_path)
    assert {p.name for p in paths} == expected
    for p in paths:
        assert p.parent == tmp_path and p.read_bytes()[:8] == PNG


def test_a_link_may_name_the_connection():
    import types

    tracer = trace.Tracer(3)
    tracer.attach(types.SimpleNamespace(env=types.SimpleNamespace(now=0.0), tracer=None))
    link = types.SimpleNamespace(name="up")
    from commsim.network.message import Message

    a, b = object(), object()
    for conn in (a, b, a):
        tracer.sent(link, Message("handshake", "client0", "server", handshake=60, label="handshake 1"),
                    conn=conn)
    assert [r.conn for r in tracer.records] == [1, 2, 1]
