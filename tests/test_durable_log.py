"""The group-commit durable log on its own (commsim.nodes.durable_log), in
tiny scenarios with exact outcomes."""

from commsim.engine import Simulation, call_later
from commsim.nodes import Cpu
from commsim.nodes.durable_log import DurableLog
from commsim.nodes.faults import Crashable, FaultPlan


class Owner(Crashable):
    def __init__(self, sim, downtime=None):
        self.init_faults(FaultPlan(sim, downtime=downtime), arm=False)


def _setup(flush=1.0, downtime=None, interval=None, disk=False, duration=10.0):
    sim = Simulation({"warmup": 0.0, "duration": duration}, 1)
    owner = Owner(sim, downtime)
    cpu = Cpu(sim, "disk", 1) if disk else None
    log = DurableLog(sim, owner, flush, disk=cpu, interval=interval)
    durable_at: dict = {}

    def write_at(t, name):
        call_later(sim.env, t, lambda _e: log.append(lambda tok: durable_at.__setitem__(
            tok, sim.now), name))

    return sim, owner, log, durable_at, write_at, cpu


def test_group_commit_batches_the_writes_that_arrive_during_a_flush():
    # Flush 1 s.  a at 0 starts a flush (0-1) covering a; b (0.5) and c (0.7)
    # wait for the next one, which starts at 1 and covers both (1-2); d at 2.5
    # starts its own (2.5-3.5).
    sim, _o, log, durable_at, write_at, _ = _setup()
    for t, name in [(0.0, "a"), (0.5, "b"), (0.7, "c"), (2.5, "d")]:
        write_at(t, name)
    sim.run()
    assert durable_at == {"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.5}
    assert log.flush_log == [(0.0, 1.0), (1.0, 2.0), (2.5, 3.5)]
    assert log.flushes == 3 and log.appended == log.durable == 4


def test_on_a_disk_the_flushes_are_its_busy_time():
    sim, _o, log, durable_at, write_at, disk = _setup(flush=0.25, disk=True, duration=4.0)
    for t, name in [(0.0, "a"), (0.1, "b"), (1.0, "c")]:
        write_at(t, name)
    sim.run()
    assert durable_at == {"a": 0.25, "b": 0.5, "c": 1.25}
    assert disk.account.utilization() == 0.75 / 4.0


def test_a_crash_loses_exactly_the_records_not_yet_durable():
    # a at 0 (flush 0-1 in progress), b at 0.5 waiting; the owner crashes at
    # 0.8: a and b are lost and returned (LSN order), no callback ever runs
    # for them; the flush in progress is void and the device stays busy until
    # 1.0.  Restart at 0.9; c at 0.95 reuses LSN 1 and waits for the device:
    # its flush runs 1.0-2.0.
    sim, owner, log, durable_at, write_at, _ = _setup(downtime=0.1)
    write_at(0.0, "a")
    write_at(0.5, "b")
    write_at(0.95, "c")
    lost = []
    owner.on_crash = lambda: lost.extend(log.crash())
    owner.crash_at(0.8)
    sim.run()
    assert lost == ["a", "b"]
    assert log.writes_lost == 2 and log.crash_log == [0.8]
    assert durable_at == {"c": 2.0}
    assert log.flush_log == [(1.0, 2.0)]
    assert log.durable == 1


def test_async_commit_flushes_in_the_background_and_counts_acked_writes_lost():
    # Interval 1 s, flush 0.25 s.  Writes acknowledged at once at 0.2, 0.5
    # (durable by the flush 1.0-1.25) and 1.5, 1.9 (the flush due at 2.0
    # never happens: crash at 1.95).  Lost: 2 records, both acknowledged.
    sim, owner, log, _d, _w, _ = _setup(flush=0.25, interval=1.0, downtime=None, duration=3.0)
    for t in (0.2, 0.5, 1.5, 1.9):
        call_later(sim.env, t, lambda _e: log.ack(log.append()))
    owner.on_crash = lambda: log.crash()
    owner.crash_at(1.95)
    sim.run()
    assert log.flush_log == [(1.0, 1.25)]
    assert log.writes_acked == 4 and log.writes_lost == 2 and log.acked_lost == 2


def test_when_durable_of_a_durable_record_calls_back_at_once():
    sim, _o, log, _d, _w, _ = _setup()
    seen = []
    log.append()
    log.durable = 1  # as if flushed
    log.when_durable(1, seen.append, "x")
    assert seen == ["x"] and not log.flushing
