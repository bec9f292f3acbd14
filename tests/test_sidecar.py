"""Validation of the sidecar pattern (commsim/patterns/sidecar.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from commsim import theory
from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.rng import derive_run_seed
from helpers import resolved

BASE = {
    "pattern": "sidecar",
    "duration": "20s",
    "warmup": "1s",
    "clients": {"count": 10, "mode": "async", "rate": "2/s"},
    "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
    "network": {"latency": "0.5ms"},
    "sidecar": {"depth": 1, "instances": 1, "app_cores": 4},
}


def config(**sections) -> dict:
    return resolved(BASE, **sections)


def test_two_proxies_add_twice_service_plus_loopback_at_low_load():
    # 20 req/s, proxy CPU exponential with mean S = 0.4 ms per request (two
    # legs of S/2 draws... each leg draws Exp(S) and uses half), loopback
    # L = 0.1 ms one way, no mTLS, no non-CPU delay.
    S, L = 0.4e-3, 0.1e-3
    common = {"proxy_cpu": {"dist": "exponential", "mean": "0.4ms"}, "loopback_latency": "0.1ms",
              "mtls": False, "proxy_workers": 2}
    none, _ = simulate(config(sidecar={"mode": "none", **common}), 1)
    side, _ = simulate(config(sidecar={"mode": "sidecar", **common}), 1)
    expected = theory.sidecar_added_latency(2, S, L)
    assert expected == pytest.approx(2 * (S + 2 * L))
    # Per call the added time is 4 legs of Exp(S)/2: sd = sqrt(4 (S/2)^2) = S.
    # n = 20/s x 20 s = 400 calls: SE of the mean = 0.4 ms / 20 = 0.02 ms.
    # Queueing in the proxies at utilisation 20 x 0.4 ms / 2 = 0.4 % adds
    # < 0.01 ms.  Tolerance 4 SE + 0.01 ms = 0.09 ms (7.5 % of 1.2 ms).
    n = side["calls"]
    tol = 4 * S / math.sqrt(n) + 1e-5
    assert side["hop_added_mean"] == pytest.approx(expected, abs=tol)
    # End to end (common random numbers: same arrivals and service times) the
    # latency difference is the same quantity plus the app queueing shift,
    # negligible at 0.5 % app utilisation.
    assert side["latency_mean"] - none["latency_mean"] == pytest.approx(expected, abs=tol + 2e-5)
    assert none["hop_added_mean"] == 0.0 and none["proxy_cpu_s"] == 0


def test_proxy_cpu_grows_linearly_with_rate():
    rates = [100, 300, 600, 1200]  # total req/s (10 clients)
    cpu = []
    sds = []
    T = 10.0
    per_req = 0.3e-3 + 0.05e-3  # proxy CPU + mTLS per request per proxy
    for r in rates:
        cfg = config(duration="10s", clients={"rate": f"{r / 10}/s"},
                     sidecar={"mode": "sidecar", "instances": 2,
                              "proxy_cpu": {"dist": "exponential", "mean": "0.3ms"}, "mtls_cpu": "50us"})
        m, _ = simulate(cfg, 2)
        cpu.append(m["proxy_cpu_s"] / T)  # cores
        # sd of the cores: N = r T requests, each 2 proxies x 2 legs of Exp(0.3ms)/2 + const;
        # Var(sum over a Poisson count) = r T E[X^2], X the CPU of one request.
        ex2 = 4 * (0.15e-3) ** 2 + (2 * per_req) ** 2
        sds.append(math.sqrt(r * T * ex2) / T)
        assert m["proxy_vcpu_per_krps"] == pytest.approx(per_req * 1000, rel=0.03)
    slope, intercept = np.polyfit(rates, cpu, 1)
    expected = theory.proxy_cores(1.0, 2, per_req)  # 2 proxies per request
    # SE of the slope from the per-point sds (weighted ~ equally): < 0.5 %; 2 % band.
    assert slope == pytest.approx(expected, rel=0.02)
    # Intercept: handshakes only (2 instances x 2 x 1 ms per 10 s): ~0.
    assert abs(intercept) < 3 * max(sds)
    residuals = np.array(cpu) - (slope * np.array(rates) + intercept)
    assert all(abs(res) < 4 * sd for res, sd in zip(residuals, sds))


def test_retries_hide_a_faulty_instance():
    common = {"instances": 2, "fault_instances": 1, "fault_error_rate": 0.3, "retries": 2,
              "backoff": "1ms", "breaker_errors": None}
    cfg_none = config(clients={"rate": "20/s"}, sidecar={"mode": "none", **common})
    cfg_side = config(clients={"rate": "20/s"}, sidecar={"mode": "sidecar", **common})
    none, _ = simulate(cfg_none, 3)
    side, _ = simulate(cfg_side, 3)
    # No mesh: round robin sends half the calls to the faulty instance: success
    # = 1 - 0.5 x 0.3 = 0.85; n = 4000 calls, sd = sqrt(0.85 x 0.15 / 4000) = 0.0056.
    n = none["calls"]
    assert none["success_rate"] == pytest.approx(0.85, abs=4 * math.sqrt(0.85 * 0.15 / n))
    assert none["retry_amplification"] == 1.0
    # With retries a failure needs every try to fail; round robin sends the
    # retry mostly to the healthy instance, so nearly everything succeeds.
    assert side["success_rate"] > 0.995
    # Tries per call: 1 + P(first try fails) + ... ~ 1 + 0.15 (+ tiny).
    assert side["retry_amplification"] == pytest.approx(1.15, abs=0.03)


def test_circuit_breaker_ejects_a_dead_instance():
    common = {"instances": 2, "fault_instances": 1, "fault_error_rate": 1.0, "retries": 1,
              "backoff": "1ms", "breaker_errors": 3, "breaker_open": "100s"}
    # warm-up 0: the ejection happens within the first second
    on, _ = simulate(config(warmup="0s", clients={"rate": "20/s"}, sidecar={"mode": "sidecar", **common}), 4)
    off, _ = simulate(config(warmup="0s", clients={"rate": "20/s"},
                             sidecar={"mode": "sidecar", **{**common, "breaker_errors": None}}), 4)
    assert on["ejections"] >= 1
    assert on["ejections"] == 1 and on["success_rate"] > 0.999  # a call or two before the ejection
    # Ejected for the whole run: almost no retries.  Without the breaker at
    # least the half of first tries that round robin sends to the dead
    # instance retry (more when a retry takes the healthy slot of the
    # rotation and pushes the next first try onto the dead one): 1.5 to 2.
    assert on["retry_amplification"] < 1.01
    assert 1.45 < off["retry_amplification"] < 2.0
    assert off["success_rate"] < on["success_rate"]


def test_timeouts_and_slow_instance():
    # One of two instances 10x slower (Exp(10 ms), 4 cores, ~10/s: not saturated).
    # A try there exceeds the 20 ms timeout with probability ~exp(-2) = 0.135
    # (plus proxy time), so about 0.5 x 0.135 of calls time out once; the retry
    # goes round robin and nearly always succeeds.
    cfg = config(clients={"rate": "20/s"},
                 sidecar={"mode": "sidecar", "instances": 2, "fault_instances": 1, "fault_slowdown": 10,
                          "timeout": "20ms", "retries": 1, "backoff": "0s", "breaker_errors": None})
    m, _ = simulate(cfg, 5)
    frac = m["timeouts"] / m["calls"]
    n = m["calls"]
    assert frac == pytest.approx(0.5 * math.exp(-2), abs=4 * math.sqrt(0.07 * 0.93 / n) + 0.01)
    assert m["success_rate"] > 0.98
    assert m["retry_amplification"] == pytest.approx(1 + frac, abs=0.01)
    assert m["sent"] == m["delivered"] + m["dropped"] + m["in_flight"]


def test_library_mode_runs_features_in_process():
    m, _ = simulate(config(sidecar={"mode": "library", "library_cpu": "50us", "mtls_cpu": "50us",
                                    "mtls_handshake_cpu": "0s"}), 6)
    assert m["proxy_cpu_s"] == 0
    # 2 ends x (50 + 50 us) per call, no loopback, no queue worth mentioning
    assert m["hop_added_mean"] == pytest.approx(2e-4, rel=0.05)
    assert m["mesh_vcpu_per_krps"] == pytest.approx(0.2, rel=0.05)


def test_chain_depth_and_fan_out_count_calls():
    m, _ = simulate(config(sidecar={"mode": "sidecar", "depth": 3, "fan_out": 2}), 7)
    ops = m["throughput"] * 20
    # calls per client operation: 1 + 2 + 4
    assert m["calls"] / ops == pytest.approx(7, rel=0.02)


def test_determinism_and_config_errors():
    cfg = config(sidecar={"mode": "sidecar", "depth": 2, "instances": 2, "fault_instances": 1,
                          "fault_error_rate": 0.2, "timeout": "30ms"})
    a, _ = simulate(cfg, 8)
    b, _ = simulate(cfg, 8)
    clean = lambda d: {k: v for k, v in d.items() if not (isinstance(v, float) and math.isnan(v))}
    assert clean(a) == clean(b)
    with pytest.raises(ConfigError) as e:
        config(sidecar={"depth": 2, "fault_service": 2})
    assert e.value.key == "sidecar.fault_service"
    with pytest.raises(ConfigError):
        config(sidecar={"instances": 1, "fault_instances": 2})


def _istio(reps, duration):
    from pathlib import Path

    exp = load(Path(__file__).resolve().parent.parent / "experiments" / "sidecar_istio.yaml",
               [f"duration={duration}"])
    pts = {p.params["sidecar.mode"]: p.config for p in exp.points}
    diffs, cpus = [], []
    for r in range(reps):
        seed = derive_run_seed(pts["none"]["seed"], r)
        n, _ = simulate(pts["none"], seed)
        s, _ = simulate(pts["sidecar"], seed)
        diffs.append(s["latency_p90"] - n["latency_p90"])
        cpus.append(s["proxy_vcpu_per_krps"])
    return np.array(diffs), np.array(cpus)


def test_istio_preset_quick():
    # One 8 s replication (8000 requests): the p90 of ~8000 samples has a
    # relative SE of ~2-3 %, so a 20 % band around Istio's "2.65 ms" is loose
    # enough never to fail by chance and tight enough to catch a broken preset.
    diffs, cpus = _istio(1, "8s")
    assert cpus[0] == pytest.approx(0.35, rel=0.03)
    assert diffs[0] == pytest.approx(2.65e-3, rel=0.2)


@pytest.mark.slow
def test_istio_preset_calibration():
    # 5 replications x 20 s x 1000 req/s.  Published: 0.35 vCPU per 1000 req/s
    # through the proxy and +2.65 ms at p90 for a two-proxy call (Istio 1.12.3 -
    # 1.16.2 performance page).  CPU: 40 000 requests per proxy per run, CPU per
    # request lognormal cv ~0.9 -> relative SE < 0.5 %: 2 % band.  Latency: the
    # mean difference over replications within 3 standard errors, and within
    # 10 % of 2.65 ms (the calibration target).
    diffs, cpus = _istio(5, "20s")
    assert cpus.mean() == pytest.approx(0.35, rel=0.02)
    se = diffs.std(ddof=1) / math.sqrt(len(diffs))
    assert abs(diffs.mean() - 2.65e-3) < max(3 * se, 0.1 * 2.65e-3)


def test_topology_closed_forms():
    assert theory.sidecar_added_latency(2, 0.35e-3, 40e-6, 0.0, 0.29e-3) == pytest.approx(
        2 * (0.35e-3 + 2 * 0.29e-3 + 2 * 40e-6))
    assert theory.sidecar_added_latency(0, 1.0, 1.0) == 0.0
    assert theory.proxy_cores(1000, 1, 0.35e-3) == pytest.approx(0.35)
    with pytest.raises(ValueError):
        theory.proxy_cores(-1, 1, 1e-3)
    with pytest.raises(ValueError):
        theory.consistent_hash_moved_fraction(5, 4)
    assert theory.stateless_store_added_latency(1e-3, 1e-4, 0.5) == pytest.approx(1.5 * 2.1e-3)


def test_network_bandwidth_serialises_each_hop_exactly():
    """mode none, one sync client, constant 5 ms hops and 1 ms service: a
    1250-byte request takes 1 ms and a 12,500-byte response 10 ms at 10 Mbps,
    so every call takes 5 + 1 + 1 + 5 + 10 = 22 ms (0 + 1 + 0 + 5 + 5 = 11 ms
    without the bandwidth limit)."""
    base = dict(clients={"count": 1, "mode": "sync", "think_time": 0},
                server={"cores": 1, "service_time": "1ms"},
                sidecar={"mode": "none", "request_size": 1250, "response_size": 12500})
    slow, _ = simulate(config(network={"latency": "5ms", "bandwidth": "10Mbps"}, **base), 1)
    fast, _ = simulate(config(network={"latency": "5ms"}, **base), 1)
    assert slow["latency_p50"] == pytest.approx(0.022, rel=1e-9)
    assert slow["latency_p99"] == pytest.approx(0.022, rel=1e-9)
    assert fast["latency_p99"] == pytest.approx(0.011, rel=1e-9)


def test_network_loss_adds_geometric_retransmissions_per_hop():
    """Loss p = 0.2, RTO 100 ms, no drops (max_retries 30): each of a call's
    two network messages waits rto * p / (1 - p) = 25 ms more on average, so
    a call takes 50 ms longer; bytes sent are 1 / (1 - p) per message.  The
    per-call extra has sd ~ sqrt(2) * rto * sqrt(p) / (1 - p) = 79 ms; ~4,000
    calls give a standard error ~1.3 ms: tolerance 6 ms (4.7 SE)."""
    base = dict(clients={"count": 20, "mode": "sync", "think_time": "0.1s"},
                server={"service_time": "1ms"},
                sidecar={"mode": "none", "app_cores": 4})
    lossy, _ = simulate(config(network={"latency": "5ms", "loss": 0.2, "rto": "100ms",
                                        "max_retries": 30}, **base), 3)
    clean, _ = simulate(config(network={"latency": "5ms"}, **base), 3)
    assert clean["latency_mean"] == pytest.approx(0.011, rel=1e-9)
    assert abs(lossy["latency_mean"] - clean["latency_mean"] - 0.050) < 0.006
    sent = lossy["bytes_total"] - lossy["bytes_retransmitted"]
    assert lossy["bytes_total"] / sent == pytest.approx(1 / 0.8, rel=0.03)
    assert lossy["sent"] == lossy["delivered"] + lossy["dropped"] + lossy["in_flight"]


@pytest.mark.parametrize("key,value", [("handshake", "tls1.3"), ("keepalive", False)])
def test_connection_keys_are_refused_with_the_sidecar_keys_to_use(key, value):
    with pytest.raises(ConfigError) as e:
        config(network={key: value})
    assert e.value.key == f"network.{key}"
    assert "sidecar." in str(e.value)
