"""The crash/restart mechanism on its own (commsim.nodes.faults), in tiny
scenarios with exact outcomes."""

from commsim.engine import Simulation, call_later
from commsim.nodes.faults import Crashable, FaultPlan


def _sim(duration=20.0, warmup=0.0):
    return Simulation({"warmup": warmup, "duration": duration}, 1)


class Worker(Crashable):
    """Starts a job of ``work`` seconds at each of ``starts``; a job completes
    only if the worker neither crashed nor restarted meanwhile."""

    def __init__(self, sim, plan, starts, work):
        self.sim = sim
        self.env = sim.env
        self.work = work
        self.started: list[float] = []
        self.done: list[float] = []
        self.dropped_at_crash: list[list[float]] = []
        self.inflight: dict = {}
        self.log: list = []
        self.init_faults(plan, arm=False)
        for t in starts:
            call_later(self.env, t, self._start)

    def _start(self, _e):
        if not self.up:
            self.log.append(("refused", self.sim.now))
            return
        t = self.sim.now
        self.started.append(t)
        self.inflight[t] = None
        call_later(self.env, self.work, self._finish, (self.epoch, t))

    def _finish(self, event):
        epoch, t = event.value
        if self.current(epoch):
            del self.inflight[t]
            self.done.append(t)

    def on_crash(self):
        self.log.append(("crash", self.sim.now))
        self.dropped_at_crash.append(sorted(self.inflight))
        self.inflight.clear()

    def on_restart(self):
        self.log.append(("restart", self.sim.now))


def test_a_crash_drops_exactly_what_was_in_flight():
    # Jobs of 1 s start at 0, 0.5, 1.0, 1.5 and 3.0; the worker crashes at
    # 1.25 and is down 1 s.  In flight at 1.25: the jobs of 0.5 and 1.0 (the
    # one of 0 finished at 1.0).  The start at 1.5 is refused (down until
    # 2.25); the job of 3.0 runs after the restart.
    sim = _sim()
    w = Worker(sim, FaultPlan(sim, downtime=1.0), [0.0, 0.5, 1.0, 1.5, 3.0], 1.0)
    w.crash_at(1.25)
    sim.run()
    assert w.dropped_at_crash == [[0.5, 1.0]]
    assert w.done == [0.0, 3.0]
    assert w.log == [("crash", 1.25), ("refused", 1.5), ("restart", 2.25)]
    assert w.up and w.crashes == 1 and w.epoch == 2


def test_work_started_before_a_crash_does_not_complete_after_the_restart():
    # A job of 3 s started at 0; crash at 1, restart at 1.5: the job's
    # completion at 3 belongs to an earlier epoch and is discarded.
    sim = _sim()
    w = Worker(sim, FaultPlan(sim, downtime=0.5), [0.0], 3.0)
    w.crash_at([1.0])
    sim.run()
    assert w.done == [] and w.dropped_at_crash == [[0.0]]
    assert w.log == [("crash", 1.0), ("restart", 1.5)]


def test_mtbf_and_mttr_alternate_and_a_crash_while_down_does_nothing():
    # Up-times 2 s, down-times 1 s: crashes at 2, 5, 8, 11, ...; a scheduled
    # crash at 5.5 falls in an outage and does nothing.
    sim = _sim(duration=12.0)
    w = Worker(sim, FaultPlan(sim, uptime=lambda: 2.0, downtime=lambda: 1.0), [], 1.0)
    w.crash_at([5.5])
    w.arm()
    sim.run()
    assert [t for kind, t in w.log if kind == "crash"] == [2.0, 5.0, 8.0, 11.0]
    assert [t for kind, t in w.log if kind == "restart"] == [3.0, 6.0, 9.0]
    assert w.crashes == 4


def test_a_scheduled_crash_voids_the_armed_random_crash():
    # Up-time 4 s armed at 0 (random crash due at 4); a scheduled crash at 1
    # with 1 s down-time restarts at 2 and re-arms: next random crash at 6,
    # not 4.
    sim = _sim(duration=7.0)
    w = Worker(sim, FaultPlan(sim, uptime=lambda: 4.0, downtime=1.0), [], 1.0)
    w.crash_at(1.0)
    w.arm()
    sim.run()
    assert w.log == [("crash", 1.0), ("restart", 2.0), ("crash", 6.0)]


def test_never_restarts_without_a_downtime_and_counts_only_window_crashes():
    sim = _sim(duration=5.0, warmup=2.0)
    w = Worker(sim, FaultPlan(sim, downtime=None), [], 1.0)
    w.crash_at(1.0)  # in the warm-up: not counted
    sim.run()
    assert not w.up and w.crashes == 0 and w.log == [("crash", 1.0)]
    w2_sim = _sim(duration=5.0, warmup=2.0)
    w2 = Worker(w2_sim, FaultPlan(w2_sim, downtime=None), [], 1.0)
    w2.crash_at(3.0)
    w2_sim.run()
    assert w2.crashes == 1


def test_invalidate_voids_outstanding_work_without_going_down():
    sim = _sim()
    w = Worker(sim, FaultPlan(sim, downtime=1.0), [0.0, 2.0], 1.0)
    call_later(sim.env, 0.5, lambda _e: w.invalidate())
    sim.run()
    assert w.up and w.done == [2.0] and w.crashes == 0
