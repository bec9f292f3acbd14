"""max_run_queue: a CPU whose run queue reaches it stops the run (an
overloaded open-loop run would otherwise grow its queue, and memory, for as
long as it runs); the run is flagged unstable and its window ends there."""

from __future__ import annotations

import pytest

from commsim.config import load
from commsim.errors import ConfigError
from commsim.experiment.runner import simulate
from commsim.experiment.stability import reasons


def _polling(**top) -> dict:
    # jitter keeps short polling on its event-driven path (a real run queue)
    return {"pattern": "short_polling", "duration": 20, "warmup": 1, "clients": {"count": 2000},
            "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1.25ms"}},
            "short_polling": {"jitter": "0.1s"}, "workload": {"event_rate": 0.1}, **top}


def _run(cfg: dict):
    config = load(cfg).points[0].config
    r = simulate(config, 5)
    return r, config


def test_an_overloaded_run_stops_when_a_run_queue_reaches_the_limit():
    # 2,000 polls/s against 800/s of capacity: the queue grows by ~1,200 a second
    r, config = _run(_polling(max_run_queue=3000))
    m, sim = r.metrics, r.sim
    assert m["stopped"] == 1 and 1.0 < m["stopped_at"] < 5.0   # 3,000 queued after ~2.5 s of 20
    assert len(r.model.cpu.queue) == 3000
    assert "cpu 'server'" in sim.stop_reason and "3,000 jobs" in sim.stop_reason
    # The window ends at the stop: rates are per second of the run that happened.
    assert sim.end == m["stopped_at"] and sim.duration == pytest.approx(m["stopped_at"] - 1.0)
    # Busy time counts the job in service at the stop up to its finish (CPU time is
    # accounted when a job starts): at most one service time per core beyond 1.
    assert 0.98 < m["server_utilization"] < 1.0 + 0.02 / sim.duration
    why = " ".join(reasons(m, config))
    assert "run stopped at" in why and "max_run_queue" in why


def test_run_ahead_stops_at_the_same_run_queue_length():
    """Short polling's run-ahead CPU holds the jobs that wait (admitted, not
    started; each is accounted when it starts) and stops the run at the limit,
    within one batch (1 ms) of when the event-driven path stops."""
    cfg = _polling(max_run_queue=3000)
    cfg["short_polling"] = {"jitter": "0s"}
    ahead, config = _run(cfg)
    assert ahead.model.ahead and ahead.metrics["stopped"] == 1
    assert "cpu 'server'" in ahead.sim.stop_reason and "3,000 jobs" in ahead.sim.stop_reason
    with pytest.MonkeyPatch.context() as m:
        from commsim.patterns.notifications.polling import ShortPolling

        m.setattr(ShortPolling, "_can_run_ahead", lambda self: False)
        events, _ = _run(cfg)
    assert not events.model.ahead and events.metrics["stopped"] == 1
    assert abs(ahead.metrics["stopped_at"] - events.metrics["stopped_at"]) < 0.0011 + 0.02
    assert any("max_run_queue" in x for x in reasons(ahead.metrics, config))


def test_null_switches_the_guard_off_and_a_stable_run_never_stops():
    r, _ = _run(_polling(max_run_queue=None, duration=4))
    assert r.metrics["stopped"] == 0 and r.metrics["stopped_at"] == 5.0
    assert len(r.model.cpu.queue) > 3000
    stable = _polling(max_run_queue=50, duration=4)
    stable["server"] = {"cores": 4, "service_time": "0.1ms"}
    r, config = _run(stable)
    assert r.metrics["stopped"] == 0 and r.metrics["stopped_at"] == 5.0
    assert not any("stopped" in x for x in reasons(r.metrics, config))


def test_the_default_is_a_million_and_any_cpu_node_stops_the_run():
    assert load({"pattern": "request_response"}).points[0].config["max_run_queue"] == 1_000_000
    # An open-loop request-response server at 2x its capacity.
    r, config = _run({"pattern": "request_response", "duration": 10, "max_run_queue": 500,
                      "clients": {"count": 100, "mode": "async", "rate": 20},
                      "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}}})
    assert r.metrics["stopped"] == 1 and r.metrics["stopped_at"] < 1.0
    assert any("max_run_queue" in x for x in reasons(r.metrics, config))


@pytest.mark.parametrize("bad", [0, -3, "many", 1.5])
def test_bad_values_are_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match="^max_run_queue"):
        load({"pattern": "request_response", "max_run_queue": bad})


@pytest.mark.parametrize("cores,mean", [(1, 0.8e-3), (3, 2.5e-3), (4, 5e-3)])
def test_run_ahead_cpu_gives_the_event_driven_cpus_times_and_accounting(cores, mean):
    """Cpu.admit_many (FIFO G/G/c recursion, no events) against Cpu.submit
    (one completion event per job) on the same Poisson jobs, across the
    window's edges and the run's end (loads 0.8 to 1.25 per core)."""
    import numpy as np

    from commsim.engine import Simulation
    from commsim.engine.events import call_at
    from commsim.nodes import Cpu

    config = load({"pattern": "request_response", "duration": 3, "warmup": 1}).points[0].config
    rng = np.random.default_rng(cores)
    arrivals = np.cumsum(rng.exponential(1e-3, 4500)).tolist()    # past the run's end (4 s)
    works = rng.exponential(mean * cores, 4500).tolist()
    wasted = (rng.random(4500) < 0.3).tolist()

    ev = Simulation(config, 1)
    cpu_e = Cpu(ev, "server", cores)
    finished = {}
    for i, (t, w, x) in enumerate(zip(arrivals, works, wasted)):
        if t < ev.end:
            call_at(ev.env, t, lambda _e, i=i, w=w, x=x: cpu_e.submit(
                w, "poll", lambda tok, _wait: finished.__setitem__(tok, ev.env.now), i, x))
    ev.run()

    ah = Simulation(config, 1)
    cpu_a = Cpu(ah, "server", cores)
    inside = [i for i, t in enumerate(arrivals) if t < ah.end]
    finish = []
    for k in range(0, len(inside), 700):       # batches of any size give the same
        part = inside[k:k + 700]
        finish += cpu_a.admit_many([arrivals[i] for i in part], [works[i] for i in part],
                                   [wasted[i] for i in part], "poll")
    ah.run()
    assert {i: f for i, f in zip(inside, finish) if f < ah.end} == finished
    assert cpu_a.account.by_purpose == pytest.approx(cpu_e.account.by_purpose, rel=1e-12)
    assert cpu_a.account.wasted == pytest.approx(cpu_e.account.wasted, rel=1e-12)
    assert (cpu_a.waits, cpu_a.completed) == (cpu_e.waits, cpu_e.completed)
    for attr in ("wait_sum", "sojourn_sum", "jobs_mean"):
        assert getattr(cpu_a, attr) == pytest.approx(getattr(cpu_e, attr), rel=1e-12), attr
    with pytest.raises(RuntimeError, match="a CPU runs one way"):
        cpu_a.submit(1e-3, "poll", lambda *_: None)


def test_a_trace_that_overloads_a_cpu_ends_with_a_line_not_a_traceback(tmp_path):
    from commsim.experiment.trace import trace

    config = load({"pattern": "request_response", "duration": 5, "max_run_queue": 20,
                   "clients": {"count": 100, "mode": "async", "rate": 20},
                   "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}}}
                  ).points[0].config
    text, path = trace(config, 100_000, tmp_path)
    assert "run stopped: the run queue of cpu 'server' reached 20 jobs" in text
    assert path.exists()
