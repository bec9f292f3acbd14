"""Trace the first messages of a run: a ``curl -v``-style log and a sequence diagram.

:class:`Tracer` is a pure observer.  :class:`~commsim.network.link.Link`
calls ``sim.tracer.sent(link, msg)`` when it puts a message on the wire and
``sim.tracer.arrived(link, msg)`` when the message is delivered; the tracer
copies what it needs (times, link, kind, label, ends, bytes by category) and
never touches the model, the random streams or the event queue, so a traced
run produces exactly the metrics of an untraced one.  It records the first
``limit`` messages in send order; once those have all arrived it turns
its hooks into no-ops (it stays attached), so the rest of the run pays
almost nothing.

:func:`trace` runs the first sweep point's config with replication 0's seed
(the seed ``commsim run`` gives it) and stops early: it builds the model the
way :func:`commsim.experiment.runner.simulate` does, then steps the SimPy
environment one event at a time until the tracer is complete or the next
event lies at or after the end of the window (the same horizon as
``Simulation.run``, which runs ``until=sim.end``).  Nothing about the config
is changed, so the traced messages are the first messages of the real run;
the run is only cut short after them (end-of-window finalizers and metrics
are skipped, they are not needed here).

Names: a message end that is an int is a client id (``client 17``), a string
is its own name, a node with a ``name`` attribute is shown by that name, any
other object by its class and index (``publisher 0``, ``consumer 3``; by order
of appearance when it has no ``idx``/``index``), never by its ``repr``.

Connections: every traced line carries a connection id (``connection #3``,
numbered in order of first appearance, like curl's ``Connection #0``), taken
from what the message says about its connection:

* ``msg.data.conn`` (an HTTP request on a multiplexing connection) is the
  connection itself;
* a handshake flight of :mod:`commsim.network.connection` carries its
  handshake, which stands for the connection it opens; that module's clients
  hold at most one connection, so the client's later requests and responses
  belong to it until its next handshake;
* a message of a model without modelled connections (no handshake: pubsub,
  ``network.handshake: none``) belongs to the one connection of its pair of
  ends (the header line says so);
* a handshake flight that names neither (multiplexing's, whose clients open
  several connections in parallel) has no id (``connection ?``) rather than a
  guessed one.  A link or transport that knows the connection may pass it:
  ``sim.tracer.sent(link, msg, conn=obj)`` (any object standing for the
  connection, the same for both directions); that takes precedence.

Filters: ``Tracer(limit, client=N)`` traces only messages to or from client
``N``; ``connection=K`` only those of connection ``#K``; ``limit`` then
counts the matching messages.  Connection ids are the same with and without
a filter (every message is numbered, only matching ones are recorded).

Limits: a message lost beyond ``network.max_retries`` never arrives (links do
not report drops to the tracer), so with loss the trace may run to the end of
the window and show that message as "never arrived".  Retransmissions are
not reported either; a lost-and-resent message shows one send and one
arrival, the arrival including the retransmission delay.  If links call
``sim.tracer.dropped(link, msg)`` / ``sim.tracer.retransmitted(link, msg)``
(optional hooks, see :class:`Tracer`), both are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Names of the handshake flights of commsim.network.connection, by mode, in
# flight order (the flight's label is "handshake <i>", 1-based).
_FLIGHT_NAMES = {
    "tcp": ["TCP SYN", "TCP SYN-ACK"],
    "tls1.3": ["TCP SYN", "TCP SYN-ACK", "TLS 1.3 ClientHello",
               "TLS 1.3 ServerHello, EncryptedExtensions, Certificate, CertificateVerify, Finished"],
    "tls1.2": ["TCP SYN", "TCP SYN-ACK", "TLS 1.2 ClientHello",
               "TLS 1.2 ServerHello, Certificate, ServerHelloDone",
               "TLS 1.2 ClientKeyExchange, ChangeCipherSpec, Finished",
               "TLS 1.2 ChangeCipherSpec, Finished"],
}
_LAST_FLIGHT = {
    "tcp": "TCP ACK",
    "tls1.3": "TCP ACK + TLS 1.3 client Finished",
    "tls1.2": "TCP ACK",
}

# Byte categories in the order curl -v would show them: connection set-up,
# then headers, then framing, then the body.
_PARTS = (("handshake", "handshake"), ("header", "header"), ("framing", "framing"),
          ("payload", "data"))


@dataclass
class Record:
    """One traced message (a snapshot taken when it was sent)."""

    index: int            # 0-based send order
    t_sent: float
    link: str
    kind: str
    label: str
    src: object
    dst: object
    header: int
    payload: int
    framing: int
    handshake: int
    seq_sent: int         # tracer event counter: orders events at equal times
    t_arrived: float | None = None
    seq_arrived: int | None = None
    dropped_at: float | None = None
    retransmits: list = field(default_factory=list)
    conn: int | None = None  # connection id (1-based, order of first appearance), None: unknown

    @property
    def size(self) -> int:
        return self.header + self.payload + self.framing + self.handshake

    @property
    def name(self) -> str:
        if not self.label:
            return self.kind
        if self.label.startswith(self.kind):
            return self.label
        return f"{self.kind} [{self.label}]"


def _noop(link, msg) -> None:
    return None


class Tracer:
    """Records the first ``limit`` messages put on any link of one run.

    Use with :func:`commsim.experiment.runner.simulate` (``tracer=``) or
    :func:`trace`.  ``records`` holds one :class:`Record` per traced message,
    in send order.  ``complete`` becomes true when ``limit`` messages have
    been sent and every one of them has arrived (or been dropped); its hooks
    then become no-ops.
    """

    def __init__(self, limit: int = 20, client: int | None = None, connection: int | None = None):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.limit = int(limit)
        self.client = client
        self.connection = connection
        self.connections = _Connections()
        self.records: list[Record] = []
        self.complete = False
        self.sim = None
        self._pending: dict[tuple[int, int], list] = {}  # (id(link), id(msg)) -> [(msg, record)]
        self._open = 0   # traced messages not yet arrived or dropped
        self._seq = 0

    def attach(self, sim) -> None:
        self.sim = sim
        sim.tracer = self

    # ------------------------------------------------------------ hooks --
    def sent(self, link, msg, conn=None) -> None:
        """``msg`` was put on ``link``; ``conn``, if the caller knows it, is
        the object standing for the message's connection (both directions)."""
        if len(self.records) >= self.limit:
            return
        conn = self.connections.of(msg, conn)
        if self.client is not None and self.client not in (client_id(msg.src), client_id(msg.dst)):
            return
        if self.connection is not None and conn != self.connection:
            return
        sim = self.sim
        now = sim.env.now if sim is not None else 0.0
        self._seq += 1
        rec = Record(index=len(self.records), t_sent=now, link=link.name, kind=msg.kind,
                     label=msg.label, src=msg.src, dst=msg.dst, header=int(msg.header),
                     payload=int(msg.payload), framing=int(msg.framing),
                     handshake=int(msg.handshake), seq_sent=self._seq, conn=conn)
        self.records.append(rec)
        # Keep a reference to msg while it is in flight so its id stays unique.
        self._pending.setdefault((id(link), id(msg)), []).append((msg, rec))
        self._open += 1

    def arrived(self, link, msg) -> None:
        rec = self._take(link, msg)
        if rec is None:
            return
        self._seq += 1
        rec.t_arrived = self.sim.env.now
        rec.seq_arrived = self._seq
        self._closed()

    def dropped(self, link, msg) -> None:
        """Optional hook: ``msg`` was given up on (not called by links yet)."""
        rec = self._take(link, msg)
        if rec is None:
            return
        self._seq += 1
        rec.dropped_at = self.sim.env.now
        rec.seq_arrived = self._seq
        self._closed()

    def retransmitted(self, link, msg) -> None:
        """Optional hook: ``msg`` was put on the wire again (not called by links yet)."""
        entries = self._pending.get((id(link), id(msg)))
        if entries:
            entries[0][1].retransmits.append(self.sim.env.now)

    # ---------------------------------------------------------- helpers --
    def _take(self, link, msg) -> Record | None:
        if not self._open:
            return None
        key = (id(link), id(msg))
        entries = self._pending.get(key)
        if not entries:
            return None
        _, rec = entries.pop(0)
        if not entries:
            del self._pending[key]
        self._open -= 1
        return rec

    def _closed(self) -> None:
        if self._open == 0 and len(self.records) >= self.limit:
            self.complete = True
            # The rest of the run pays one no-op call per hook.  The tracer
            # stays attached: links may cache ``sim.tracer`` across a batch
            # of deliveries, so it must not turn into None under them.
            self.sent = self.arrived = self.dropped = self.retransmitted = _noop

    # ------------------------------------------------------------- text --
    def text(self, config: dict | None = None, seed: int | None = None) -> str:
        """The ``curl -v``-style log of the traced messages, events in time order."""
        return format_trace(self.records, config, seed, self.limit, self.complete,
                            self.sim.env.now if self.sim is not None else None,
                            client=self.client, connection=self.connection,
                            by_pair=self.connections.by_pair)


class _Connections:
    """Connection ids of messages (see the module docstring)."""

    def __init__(self):
        self.ids: dict[int, tuple[object, int]] = {}  # id(object) -> (object kept alive, number)
        self.current: dict = {}                        # client -> its connection (handshake)
        self.by_pair = False                           # some ids stand for a pair of ends
        self.n = 0

    def _number(self, key, obj) -> int:
        entry = self.ids.get(key)
        if entry is None:
            self.n += 1
            entry = self.ids[key] = (obj, self.n)
        return entry[1]

    def of(self, msg, conn=None) -> int | None:
        data = msg.data
        if conn is None and data is not None:
            conn = getattr(data, "conn", None)
        if conn is not None:
            return self._number(id(conn), conn)
        if msg.kind == "handshake":
            client = getattr(data, "client", None)
            if client is None or not hasattr(data, "conns"):
                return None  # a flight that does not say which connection it opens
            # connection.py's handshake: one object per connection it opens.
            self.current[client] = data
            return self._number(id(data), data)
        for end in (msg.src, msg.dst):
            hs = self.current.get(end) if _hashable(end) else None
            if hs is not None:
                return self._number(id(hs), hs)
        self.by_pair = True
        pair = (_end_key(msg.src), _end_key(msg.dst))
        pair = min(pair, pair[::-1], key=repr)
        return self._number(("pair", pair), pair)


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _end_key(x):
    return x if isinstance(x, (int, str)) else ("obj", id(x))


# ------------------------------------------------------------------ text ----

_CLIENT = re.compile(r"^client ?(\d+)$")


def client_id(x) -> int | None:
    """The client id of a message end (an int, or a name ``client 7`` /
    ``client7``), or None when the end is no client."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str):
        m = _CLIENT.match(x)
        return int(m.group(1)) if m else None
    name = getattr(x, "name", None)
    return client_id(name) if isinstance(name, str) else None


class Names:
    """Display names of message ends: ints are client ids, strings are names,
    nodes are shown by their ``name`` attribute, other objects by class and
    index (``publisher 0``), numbered by first appearance without one."""

    def __init__(self):
        self._seen: dict[int, tuple[object, str]] = {}
        self._count: dict[str, int] = {}

    def __call__(self, x) -> str:
        if isinstance(x, bool):
            return str(x)
        if isinstance(x, int):
            return f"client {x}"
        if isinstance(x, str):
            return x
        name = getattr(x, "name", None)
        if isinstance(name, str) and name:
            return name
        entry = self._seen.get(id(x))
        if entry is None:
            kind = type(x).__name__.lower()
            index = next((getattr(x, a) for a in ("idx", "index", "id")
                          if isinstance(getattr(x, a, None), int)), None)
            if index is None:
                index = self._count.get(kind, 0)
                self._count[kind] = index + 1
            entry = self._seen[id(x)] = (x, f"{kind} {index}")
        return entry[1]


def participant(x) -> str:
    """Display name of one message end (see :class:`Names`)."""
    return Names()(x)


def _flight_info(rec: Record, mode: str | None) -> list[str]:
    lines = []
    if rec.kind == "handshake" and mode in _FLIGHT_NAMES:
        names = _FLIGHT_NAMES[mode]
        try:
            i = int(rec.label.rsplit(" ", 1)[-1]) - 1
        except ValueError:
            i = -1
        if 0 <= i < len(names):
            lines.append(f"== Info: {names[i]} (flight {i + 1} of {len(names)})")
    elif rec.handshake and mode in _LAST_FLIGHT:
        lines.append(f"== Info: {_LAST_FLIGHT[mode]} rides along with this {rec.kind}")
    return lines


def _parts(rec: Record, arrow: str, verb: str) -> list[str]:
    """One line per non-empty byte category; the header line is always shown,
    except on a pure handshake flight (no header bytes, only handshake bytes),
    where "header, 0 bytes" would only be noise."""
    lines = []
    pure_handshake = rec.handshake and not (rec.header or rec.payload or rec.framing)
    for attr, name in _PARTS:
        n = getattr(rec, attr)
        if n or (attr == "header" and not pure_handshake):
            lines.append(f"{arrow} {verb} {name}, {n} bytes")
    return lines


def _conn(rec: Record) -> str:
    return f"connection #{rec.conn}" if rec.conn is not None else "connection ?"


def format_trace(records: list[Record], config: dict | None = None, seed: int | None = None,
                 limit: int | None = None, complete: bool = True,
                 stopped_at: float | None = None, *, client: int | None = None,
                 connection: int | None = None, by_pair: bool = False) -> str:
    participant = Names()
    mode = None
    if config is not None:
        mode = (config.get("network") or {}).get("handshake")
    out: list[str] = []
    if config is not None:
        head = f"== Info: pattern {config.get('pattern')}"
        if seed is not None:
            head += f", run seed {seed} (replication 0)"
        out.append(head)
    n = len(records)
    only = [f"of client {client}"] if client is not None else []
    only += [f"of connection #{connection}"] if connection is not None else []
    out.append(f"== Info: first {n} message(s) {' and '.join(only) + ' ' if only else ''}in send order"
               + (f" (limit {limit})" if limit is not None else "")
               + "; times are simulated seconds")
    if by_pair:
        out.append("== Info: where no connection is modelled, a pair of ends shares one connection id")
    if mode and mode != "none":
        keep = (config.get("network") or {}).get("keepalive")
        out.append(f"== Info: connection set-up: {mode}"
                   + ("" if keep is None else (", keep-alive" if keep else ", new connection per request")))

    events = []
    for rec in records:
        events.append((rec.t_sent, rec.seq_sent, "send", rec))
        if rec.t_arrived is not None:
            events.append((rec.t_arrived, rec.seq_arrived, "recv", rec))
        elif rec.dropped_at is not None:
            events.append((rec.dropped_at, rec.seq_arrived, "drop", rec))
    events.sort(key=lambda e: (e[0], e[1]))
    opened: set = set()
    for t, _, what, rec in events:
        src, dst = participant(rec.src), participant(rec.dst)
        if what == "send":
            if rec.conn is not None and rec.conn not in opened:
                opened.add(rec.conn)
                out.append(f"== Info: connection #{rec.conn}: {src} <-> {dst}")
            out.append(f"[{t:11.6f} s] {src} => {dst}  {rec.name} ({rec.link}, {_conn(rec)})")
            out += _flight_info(rec, mode)
            out += _parts(rec, "=>", "Send")
            for tr in rec.retransmits:
                out.append(f"== Info: lost, retransmitted at {tr:.6f} s")
        elif what == "recv":
            ms = (rec.t_arrived - rec.t_sent) * 1e3
            out.append(f"[{t:11.6f} s] {dst} <= {src}  {rec.name} arrived after {ms:.3f} ms "
                       f"({_conn(rec)})")
            out += _parts(rec, "<=", "Recv")
        else:
            out.append(f"[{t:11.6f} s] {dst} <= {src}  {rec.name} dropped "
                       f"(lost beyond max_retries) after {(t - rec.t_sent) * 1e3:.3f} ms ({_conn(rec)})")
    missing = [r for r in records if r.t_arrived is None and r.dropped_at is None]
    for rec in missing:
        out.append(f"== Info: {rec.name} #{rec.index + 1} ({participant(rec.src)} => "
                   f"{participant(rec.dst)}) never arrived before the run stopped"
                   + (f" at {stopped_at:.6f} s" if stopped_at is not None else "")
                   + " (lost, or still in flight)")
    if limit is not None and n < limit:
        out.append(f"== Info: the run sent only {n} message(s) {' and '.join(only) + ' ' if only else ''}"
                   "before its window ended")
    return "\n".join(out)


# ---------------------------------------------------------------- figure ----

_MAX_CLIENTS = 6
_OTHERS = "other clients"


def _is_client(x) -> bool:
    return client_id(x) is not None


def _lifelines(records: list[Record]) -> tuple[list[str], dict]:
    """Lifeline names left to right and a map from message end to lifeline."""
    seen_clients: list = []
    nodes: list = []
    for rec in records:
        for end in (rec.src, rec.dst):
            if _is_client(end):
                if end not in seen_clients:
                    seen_clients.append(end)
            elif end not in nodes:
                nodes.append(end)
    participant = Names()
    shown = seen_clients[:_MAX_CLIENTS]
    merged = seen_clients[_MAX_CLIENTS:]
    shown = sorted(shown, key=client_id)
    where = {c: participant(c) for c in shown}
    for c in merged:
        where[c] = _OTHERS
    names = [participant(c) for c in shown] + ([_OTHERS] if merged else [])
    for nd in nodes:
        where[nd] = participant(nd)
        names.append(participant(nd))
    return names, where


def _size_text(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB"


_COLORS = {"request": "tab:blue", "response": "tab:green", "handshake": "tab:gray"}
_SPARE = ("tab:purple", "tab:orange", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def sequence_figure(records: list[Record], title: str | None = None, stopped_at: float | None = None):
    """A sequence diagram: lifelines across, simulated time downward."""
    # A bare Figure (no pyplot): no global backend state, safe in any process.
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    names, where = _lifelines(records)
    xpos = {name: i for i, name in enumerate(names)}
    times = [r.t_sent for r in records] + [r.t_arrived for r in records if r.t_arrived is not None] \
        + [r.dropped_at for r in records if r.dropped_at is not None]
    t0 = min(times) if times else 0.0
    t1 = max(times) if times else 1.0
    if stopped_at is not None and any(r.t_arrived is None and r.dropped_at is None for r in records):
        t1 = max(t1, stopped_at)
    span = t1 - t0 if t1 > t0 else 1e-3
    pad = 0.04 * span

    height = max(4.0, min(14.0, 2.0 + 0.45 * len(records)))
    width = max(5.0, min(14.0, 1.8 * len(names) + 2.0))
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    for name, x in xpos.items():
        ax.axvline(x, color="0.75", lw=1.0, zorder=0)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.xaxis.tick_top()
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(t1 + pad, t0 - pad)  # time runs downward
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_ylabel("simulated time (s)")

    kinds_seen = {}
    for rec in records:
        xs, xd = xpos[where[rec.src]], xpos[where[rec.dst]]
        if rec.kind not in kinds_seen:  # other kinds (publish, deliver, ack...) each their own colour
            spare = [c for c in _SPARE if c not in kinds_seen.values()]
            kinds_seen[rec.kind] = _COLORS.get(rec.kind, spare[0] if spare else "tab:purple")
        color = kinds_seen[rec.kind]
        style = "--" if rec.kind == "handshake" else "-"
        if rec.t_arrived is not None:
            end_t = rec.t_arrived
        elif rec.dropped_at is not None:
            end_t = rec.dropped_at
        else:
            end_t = t1 + pad * 0.5
        if xs == xd:  # both ends merged into one lifeline: a self-arrow
            xd = xs + 0.3
        ax.annotate("", xy=(xd, end_t), xytext=(xs, rec.t_sent),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2, ls=style,
                                    shrinkA=0, shrinkB=0))
        if rec.t_arrived is None:
            ax.plot([xd], [end_t], marker="x", color="tab:red", ms=8)
        text = f"{rec.name}  {_size_text(rec.size)}"
        ax.text((xs + xd) / 2, (rec.t_sent + end_t) / 2, text, fontsize=7, ha="center",
                va="center", color=color,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    handles = [Line2D([], [], color=c, ls="--" if k == "handshake" else "-", label=k)
               for k, c in kinds_seen.items()]
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01),
                  ncol=len(handles), fontsize=8, frameon=False)
    for side in ("right", "bottom"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, pad=28, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------- entry ----

def run_traced(config: dict, limit: int, seed: int | None = None, *, client: int | None = None,
               connection: int | None = None):
    """Run ``config`` until its first ``limit`` messages have arrived (or the
    window ends); returns ``(tracer, sim, seed)``.  See the module docstring."""
    from commsim.engine import Simulation
    from commsim.engine.simulation import Overloaded
    from commsim.patterns import registry
    from commsim.rng import derive_run_seed

    if seed is None:
        seed = derive_run_seed(config["seed"], 0)
    tracer = Tracer(limit, client=client, connection=connection)
    pattern = registry()[config["pattern"]]
    sim = Simulation(config, seed)
    tracer.attach(sim)          # as runner.simulate: before the model is built
    pattern.model(sim)
    env = sim.env
    end = sim.end
    step = env.step
    peek = env.peek
    try:
        while not tracer.complete and peek() < end:
            step()
    except Overloaded as stop:  # max_run_queue: the trace ends there, as a run does
        sim.stopped = True
        sim.stop_reason = str(stop)
    return tracer, sim, seed


def trace(config: dict, limit: int, out_dir, *, client: int | None = None,
          connection: int | None = None) -> tuple[str, Path]:
    """Trace the first ``limit`` messages of a resolved run config.

    Returns the ``curl -v``-style text and the path of the sequence diagram
    written to ``out_dir/trace.png``.
    """
    from commsim.experiment.output import save_figure

    tracer, sim, seed = run_traced(config, limit, client=client, connection=connection)
    text = tracer.text(config, seed)
    if sim.stopped:
        text += (f"\n[{sim.env.now:11.6f} s] run stopped: {sim.stop_reason}; the offered load "
                 "exceeds capacity\n")
    only = (f" of client {client}" if client is not None else "") + \
        (f" of connection #{connection}" if connection is not None else "")
    title = (f"{config.get('name', '')}: first {len(tracer.records)} messages{only} "
             f"({config['pattern']}, seed {seed})")
    fig = sequence_figure(tracer.records, title, stopped_at=sim.env.now)
    path = save_figure(fig, Path(out_dir) / "trace.png")
    return text, path
