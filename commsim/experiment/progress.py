"""Progress of an experiment: a bar with an ETA on a terminal, one live line
in a Jupyter notebook, plain lines otherwise, nothing with ``--quiet``.

Written here rather than taken from tqdm: it is ~100 lines, needs to show the
*simulated* clock of a long single run (which tqdm would need a second bar
for), and must be safe to call from the thread that drains worker reports.

* On a terminal one line is redrawn in place::

      [##########..........]  12/40 runs  30%  0:12 elapsed  ETA 0:28  run 13: 45% of sim time

* In a notebook (an IPython kernel, whose stderr is no terminal) the same
  line is one output that is updated in place (an IPython display handle):
  ``commsim.run(..., progress=True)`` works the same in both.

* Elsewhere (CI logs, files) one line per finished run is printed, thinned
  to about one every two seconds for big sweeps, plus a line for the
  simulated clock of a run that takes longer than a few seconds.
"""

from __future__ import annotations

import sys
import threading
import time


def _fmt(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts finished runs out of a total (which may grow) and draws them.

    Also usable as the old ``progress(done, total)`` callback.
    """

    def __init__(self, stream=None, tty: bool | None = None, width: int = 24,
                 min_interval: float = 2.0, clock=time.monotonic, display=None):
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            tty = _isatty(self.stream)
            if not tty and display is None and _in_notebook():
                display = _ipython_display
        # display(text) shows a line and returns update(text), which redraws it.
        self._display = display
        self._update = None
        self.tty = bool(tty) or display is not None
        self.width = width
        self.min_interval = min_interval
        self.clock = clock
        self.total = 0
        self.done = 0
        self.reused = 0
        self.failed = 0
        self._computed_start = None
        self._computed = 0
        self._t0 = clock()
        self._last_line = -1e9
        self._sim: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._drawn = False

    # ------------------------------------------------------------ events --
    def start(self, total: int, reused: int = 0) -> None:
        with self._lock:
            self.total = total
            self.done = reused
            self.reused = reused
            self._t0 = self.clock()
            self._computed = 0
            if reused and not self.tty:
                self._line(f"{reused}/{total} runs already stored, computing {total - reused}")
            self._draw(force=True)

    def grow(self, extra: int, reused: int = 0) -> None:
        """``extra`` more runs, ``reused`` of them already stored."""
        with self._lock:
            self.total += extra
            self.done += reused
            self.reused += reused
            if not self.tty:
                self._line(f"adding {extra} run(s) to reach the precision target: {self._status()}")
            self._draw(force=True)

    def run_done(self, index: int | None = None, ok: bool = True, label: str = "") -> None:
        with self._lock:
            self.done += 1
            self._computed += 1
            if not ok:
                self.failed += 1
            if index is not None:
                self._sim.pop(index, None)
            if self.tty:
                self._draw()
            else:
                now = self.clock()
                if self.done == self.total or now - self._last_line >= self.min_interval or not ok:
                    self._last_line = now
                    self._line(self._status() + (f"  ({label})" if label else ""))

    def sim_time(self, index: int, now: float, end: float) -> None:
        """Simulated-time progress of a running run (from a watcher thread)."""
        with self._lock:
            self._sim[index] = (now, end)
            if self.tty:
                self._draw()
            else:
                t = self.clock()
                if t - self._last_line >= max(self.min_interval, 5.0):
                    self._last_line = t
                    frac = now / end if end > 0 else 1.0
                    self._line(f"  run {index + 1}: simulated {now:.4g} s of {end:.4g} s "
                               f"({100 * frac:.0f}%)")

    def close(self) -> None:
        with self._lock:
            if self._display is not None:
                if self._drawn:
                    self._draw(force=True)
                    self._drawn = False
                return
            if self.tty and self._drawn:
                self._draw(force=True)
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def message(self, text: str) -> None:
        """Print a line without garbling the bar."""
        with self._lock:
            if self._display is not None:  # the live line is a separate output
                self.stream.write(text + "\n")
                self.stream.flush()
                return
            if self.tty and self._drawn:
                self.stream.write("\r\033[K")
            self.stream.write(text + "\n")
            self.stream.flush()
            if self.tty and self._drawn:
                self._draw(force=True)

    def __call__(self, done: int, total: int) -> None:  # old callback form
        with self._lock:
            self.total = total
        self.run_done()

    # ----------------------------------------------------------- drawing --
    def eta(self) -> float | None:
        """Seconds left, from the rate of runs computed so far (not reused)."""
        if self._computed == 0:
            return None
        rate = self._computed / max(1e-9, self.clock() - self._t0)
        left = self.total - self.done
        # A run in flight that is partly through its simulated time counts partly.
        partial = sum(now / end for now, end in self._sim.values() if end > 0)
        return max(0.0, (left - partial) / rate)

    def _status(self) -> str:
        total = max(self.total, 1)
        pct = 100.0 * self.done / total
        text = f"{self.done}/{self.total} runs {pct:3.0f}%  {_fmt(self.clock() - self._t0)} elapsed"
        eta = self.eta()
        if eta is not None and self.done < self.total:
            text += f"  ETA {_fmt(eta)}"
        if self.failed:
            text += f"  {self.failed} failed"
        return text

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = self.clock()
        if not force and now - self._last_line < 0.1:
            return
        self._last_line = now
        total = max(self.total, 1)
        filled = int(self.width * self.done / total)
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {self._status()}"
        if self._sim:
            index, (t, end) = max(self._sim.items())
            text += f"  run {index + 1}: {100 * t / end:.0f}% of sim time" if end > 0 else ""
        self._drawn = True
        if self._display is not None:
            if self._update is None:
                self._update = self._display(text)
            else:
                self._update(text)
            return
        self.stream.write("\r\033[K" + text)
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (without importing IPython otherwise)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # pragma: no cover
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _Line:
    """Plain text for IPython's display (text/plain is its repr)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _ipython_display(text: str):
    from IPython.display import DisplayHandle

    handle = DisplayHandle()  # one output, updated in place by its display id
    handle.display(_Line(text))
    return lambda new: handle.update(_Line(new))


class Quiet(Progress):
    """No output at all (``--quiet``)."""

    def __init__(self):
        super().__init__(stream=_Null(), tty=False)

    def _line(self, text: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class _Null:
    def write(self, _text):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False
