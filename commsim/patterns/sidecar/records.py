"""Per-operation records of the sidecar pattern (``commsim run --records``).

Written into the recorder's :class:`~commsim.engine.recorder.Operations`
``sidecar``, two kinds of row:

* ``call``: one per call a client makes (to service 0), end to end: from
  the client's application sending it to the client's application having
  the result (every try, back-off and downstream call included).
  ``outcome`` ``ok`` or ``error`` (an error answer, a timeout or a message
  given up on, on its last try); ``bytes`` = ``request_size +
  response_size`` (the call's own request and response, once: retries and
  the downstream calls it causes are not counted).  The ``ok`` rows created
  in the window are the latency metrics' samples and ``throughput x
  duration``; the ``error`` rows there are the failed operations.
* ``try``: one per try of *every* call in the mesh (the client's and the
  services' own calls downstream), from the caller's mesh picking an
  instance to the caller's mesh deciding the try's outcome: ``ok``, or
  ``error`` (an error answer, a per-try timeout, or a message given up on);
  a late answer after a timeout does not end it again.  ``client`` is the
  client's index for a try of a client's call, null for a try between
  services; ``bytes`` = ``request_size + response_size``.  The rows created
  in the window are the ``attempts`` metric.

Built only when records are asked for: the model's clients then start their
calls through :meth:`SidecarRecords.start`, and the two try hooks shadow the
model's ``_pick_and_send`` and ``_outcome`` (instance attributes), so a run
without records runs exactly the model's code.
"""

from __future__ import annotations

import math

from commsim.engine.recorder import CALL, ERROR, OK, TRY, UNFINISHED


class _ClientCall:
    """A client's call's ``done``: ends its row, then the model's ``_op_done``."""

    __slots__ = ("records", "row", "cid", "t0", "done")

    def __init__(self, records, row, cid, t0, done):
        self.records = records
        self.row = row
        self.cid = cid
        self.t0 = t0
        self.done = done

    def __call__(self, ok: bool) -> None:
        r = self.records
        r.ops.end[self.row] = r.model.env.now
        r.ops.outcome[self.row] = OK if ok else ERROR
        r.model._op_done(self.t0, ok, self.done)


class SidecarRecords:
    """The recording hooks of one :class:`~commsim.patterns.sidecar.model.SidecarModel`."""

    def __init__(self, model, ops):
        self.model = model
        self.ops = ops
        self.size = model.req_size + model.resp_size
        self.tries: dict = {}  # live _Attempt -> its row
        self._pick_and_send = model._pick_and_send
        self._outcome = model._outcome
        model._pick_and_send = self.pick_and_send
        model._outcome = self.outcome

    def start(self, cid, done) -> None:
        """The model's ``start_op``, recording the client's call."""
        m = self.model
        t0 = m.env.now
        row = len(self.ops)
        self.ops.record(CALL, t0, math.nan, cid, self.size, UNFINISHED)
        m.call(m.client, 0, _ClientCall(self, row, cid, t0, done))

    def pick_and_send(self, call) -> None:
        self._pick_and_send(call)  # sets call.attempt
        done = call.done
        cid = done.cid if type(done) is _ClientCall else -1
        self.tries[call.attempt] = len(self.ops)
        self.ops.record(TRY, self.model.env.now, math.nan, cid, self.size, UNFINISHED)

    def outcome(self, att, ok: bool) -> None:
        i = self.tries.pop(att)
        self.ops.end[i] = self.model.env.now
        self.ops.outcome[i] = OK if ok else ERROR
        self._outcome(att, ok)
