"""Per-operation records of the stateful pattern (``commsim run --records``).

One row per client operation (what :class:`~commsim.patterns.stateful.servers.Op`
is: an optional login, then one request), written into the recorder's
:class:`~commsim.engine.recorder.Operations` ``stateful``:

* ``op``: ``request`` (the client had a session: no login), ``login`` (it
  began with a login), ``relogin`` (a request was answered 401, the client
  logged in again and resent it: a forced login, the ``relogins`` metric);
* ``created`` when the client starts it (its connect, if any, included),
  ``completed`` when the client has the final answer, or the link gave up
  on one of its messages;
* ``bytes``: application bytes (headers, token, bodies) of its logins,
  requests and their answers between client and balancer; handshakes and
  retransmissions not counted;
* ``outcome``: ``ok``; ``reset`` (refused or reset by a crashed or dead
  server, at connect or later), ``503`` (no server routable), ``401`` (the
  session was missing again after the relogin), ``lost`` (a message given up
  on after ``network.max_retries``); ``unfinished`` (no answer by the end of
  the run).  Every outcome but ok and unfinished counts in ``failed_requests``.

Built only when records are asked for: the model then routes its client
operations through :meth:`StatefulRecords.start` and its sends through the
wrappers below (instance attributes shadowing the model's methods), so a run
without records runs exactly the model's code plus one ``is None`` test per
finished operation.
"""

from __future__ import annotations

import math

from commsim.engine.recorder import (LOGIN, LOST, OK, RELOGIN, REQUEST, RESET, UNAUTHORIZED,
                                     UNAVAILABLE, UNFINISHED)
from commsim.patterns.stateful.servers import Op

#: The client's view of how an operation ended (the answer's label) -> outcome.
OUTCOME = {"ok": OK, "reset": RESET, "503": UNAVAILABLE, "401": UNAUTHORIZED, "lost": LOST}


class StatefulRecords:
    """The recording hooks of one :class:`~commsim.patterns.stateful.model.StatefulModel`."""

    def __init__(self, model, ops):
        self.model = model
        self.ops = ops
        self.rows: dict = {}  # live Op -> its row
        self.login_size = model.req_header + model.req_body
        self.request_size = model.req_header + (model.token_size if model.token else 0) + model.req_body
        self._send_login = model._send_login
        self._send_request = model._send_request
        self._client_receive = model._client_receive
        model._send_login = self.send_login
        model._send_request = self.send_request
        model._client_receive = self.client_receive

    def start(self, cid, done) -> None:
        """The model's ``start_op``, recording the operation's row first."""
        m = self.model
        now = m.sim.now
        op = Op(cid, done, now, m._service(), m.down > 0)  # as StatefulModel.start_op
        self.rows[op] = len(self.ops)
        self.ops.record(REQUEST, now, math.nan, cid, 0, UNFINISHED)
        if m.conns is not None:
            m.conns.open(op)
        else:
            m.first_message(op, 0)

    def send_login(self, op, forced: bool, handshake: int = 0) -> None:
        i = self.rows[op]
        self.ops.kind[i] = RELOGIN if forced else LOGIN
        self.ops.size[i] += self.login_size
        self._send_login(op, forced, handshake)

    def send_request(self, op, handshake: int = 0) -> None:
        self.ops.size[self.rows[op]] += self.request_size
        self._send_request(op, handshake)

    def client_receive(self, msg) -> None:
        i = self.rows.get(msg.data)
        if i is not None:
            self.ops.size[i] += msg.header + msg.payload
        self._client_receive(msg)

    def finished(self, op, status: str) -> None:
        i = self.rows.pop(op)
        self.ops.end[i] = self.model.sim.now
        self.ops.outcome[i] = OUTCOME[status]
