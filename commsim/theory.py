"""Closed-form results the simulator is validated against.

All functions are pure and use SI units: times in seconds, rates per second.
Invalid or unstable inputs (non-positive rates, utilisation ``rho >= 1`` for
infinite-buffer queues, ...) raise :class:`ValueError`.

Queueing dictionaries share the keys

``rho``
    server utilisation (per server), ``lam * E[S] / c``;
``wait``
    mean time in queue before service, Wq;
``response``
    mean time in system, W = Wq + E[S];
``number_in_queue``
    mean number waiting, Lq = lam * Wq (Little's law);
``number_in_system``
    mean number present, L = lam * W (Little's law).

References
----------
* L. Kleinrock, *Queueing Systems, Vol. 1: Theory*, Wiley, 1975.
* D. Gross, J. Shortle, J. Thompson, C. Harris, *Fundamentals of Queueing
  Theory*, 4th ed., Wiley, 2008.
* A. O. Allen, *Probability, Statistics, and Queueing Theory*, 2nd ed.,
  Academic Press, 1990 (Allen–Cunneen approximation).
* E. Lazowska, J. Zahorjan, G. S. Graham, K. Sevcik, *Quantitative System
  Performance*, Prentice Hall, 1984 (asymptotic bounds).
"""

from __future__ import annotations

import math

__all__ = [
    "mm1",
    "erlang_c",
    "mmc",
    "md1",
    "mg1",
    "mgc_wait_approx",
    "mm1k",
    "thread_pool_saturation",
    "closed_loop_throughput_bound",
    "short_polling",
    "long_polling",
    "prefetch_utilization",
    "pull_fetch",
    "fanout_bytes",
]


# --------------------------------------------------------------------------
# validation helpers


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _stable(rho: float) -> None:
    if rho >= 1:
        raise ValueError(f"unstable queue: utilisation rho = {rho:.6g} >= 1")


def _queue_dict(lam: float, rho: float, wait: float, mean_s: float) -> dict:
    response = wait + mean_s
    return {
        "rho": rho,
        "wait": wait,
        "response": response,
        "number_in_system": lam * response,
        "number_in_queue": lam * wait,
    }


# --------------------------------------------------------------------------
# infinite-buffer queues


def mm1(lam: float, mu: float) -> dict:
    """M/M/1 queue: Poisson arrivals, exponential service, one FIFO server.

    With rho = lam/mu < 1 (Kleinrock 1975, ch. 3):

    * Wq = rho / (mu - lam)
    * W  = 1 / (mu - lam)
    * L  = rho / (1 - rho),  Lq = rho^2 / (1 - rho)

    Parameters
    ----------
    lam: arrival rate (1/s), > 0.
    mu:  service rate (1/s), > 0.
    """
    lam = _positive("lam", lam)
    mu = _positive("mu", mu)
    rho = lam / mu
    _stable(rho)
    return _queue_dict(lam, rho, rho / (mu - lam), 1.0 / mu)


def erlang_c(c: int, a: float) -> float:
    """Erlang C: probability that an arrival waits in an M/M/c queue.

    ``a = lam/mu`` is the offered load in Erlangs; requires a < c.  Computed
    with the numerically stable Erlang B recursion (Gross et al. 2008,
    ch. 2; no factorials or powers, so it works for c in the thousands)::

        B(0) = 1,   B(k) = a B(k-1) / (k + a B(k-1))
        C(c, a) = c B(c) / (c - a (1 - B(c)))

    Parameters
    ----------
    c: number of servers, integer >= 1.
    a: offered load lam/mu, > 0 and < c.
    """
    c = _positive_int("c", c)
    a = _positive("a", a)
    _stable(a / c)
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1.0 - b))


def mmc(lam: float, mu: float, c: int) -> dict:
    """M/M/c queue: Poisson arrivals, exponential service, c FIFO servers.

    With a = lam/mu, rho = a/c < 1 and C = :func:`erlang_c` (c, a)
    (Gross et al. 2008, ch. 2):

    * Wq = C / (c mu - lam),  W = Wq + 1/mu
    * Lq = lam Wq,            L = lam W

    Returns the :func:`mm1` keys plus ``p_wait`` (= C, the probability that
    an arrival has to queue).  For c = 1 this reduces to :func:`mm1`.
    """
    lam = _positive("lam", lam)
    mu = _positive("mu", mu)
    c = _positive_int("c", c)
    rho = lam / (c * mu)
    _stable(rho)
    p_wait = erlang_c(c, lam / mu)
    out = _queue_dict(lam, rho, p_wait / (c * mu - lam), 1.0 / mu)
    out["p_wait"] = p_wait
    return out


def md1(lam: float, d: float) -> dict:
    """M/D/1 queue: Poisson arrivals, constant service time ``d``, one server.

    Pollaczek–Khinchine with zero service-time variance (Kleinrock 1975,
    ch. 5), rho = lam d < 1:

    * Wq = rho d / (2 (1 - rho)),  W = Wq + d

    This is exactly half the M/M/1 queueing delay at the same utilisation.
    """
    lam = _positive("lam", lam)
    d = _positive("d", d)
    rho = lam * d
    _stable(rho)
    return _queue_dict(lam, rho, rho * d / (2.0 * (1.0 - rho)), d)


def mg1(lam: float, mean_s: float, scv: float) -> dict:
    """M/G/1 queue via the Pollaczek–Khinchine mean-value formula.

    Poisson arrivals at rate ``lam``, i.i.d. general service times S with
    mean ``mean_s`` and squared coefficient of variation ``scv`` =
    Var[S]/E[S]^2, one FIFO (or any work-conserving non-size-based) server,
    rho = lam E[S] < 1 (Kleinrock 1975, ch. 5):

    * E[S^2] = mean_s^2 (1 + scv)
    * Wq = lam E[S^2] / (2 (1 - rho)),  W = Wq + mean_s

    scv = 1 gives :func:`mm1`, scv = 0 gives :func:`md1`.
    """
    lam = _positive("lam", lam)
    mean_s = _positive("mean_s", mean_s)
    scv = _non_negative("scv", scv)
    rho = lam * mean_s
    _stable(rho)
    second_moment = mean_s * mean_s * (1.0 + scv)
    return _queue_dict(lam, rho, lam * second_moment / (2.0 * (1.0 - rho)), mean_s)


def mgc_wait_approx(lam: float, mean_s: float, scv: float, c: int) -> float:
    """Approximate mean queueing delay Wq of an M/G/c queue (Allen–Cunneen).

    **An approximation, not an exact result.**  It scales the exact M/M/c
    waiting time by the service variability (Allen 1990; the
    Allen–Cunneen formula with Poisson arrivals, i.e. ca^2 = 1)::

        Wq(M/G/c) ~= Wq(M/M/c with mu = 1/mean_s) * (1 + scv) / 2

    It is exact for c = 1 (Pollaczek–Khinchine) and for scv = 1 (M/M/c);
    otherwise it is a heavy-traffic heuristic whose error grows at light
    load and for service distributions far from exponential.
    Requires rho = lam mean_s / c < 1.
    """
    lam = _positive("lam", lam)
    mean_s = _positive("mean_s", mean_s)
    scv = _non_negative("scv", scv)
    c = _positive_int("c", c)
    return mmc(lam, 1.0 / mean_s, c)["wait"] * (1.0 + scv) / 2.0


# --------------------------------------------------------------------------
# finite buffer


def mm1k(lam: float, mu: float, K: int) -> dict:
    """M/M/1/K queue: at most K requests in the system (1 in service, K-1 queued).

    Birth–death chain with stationary law (Gross et al. 2008, ch. 2),
    rho = lam/mu (any value > 0; the queue is always stable)::

        p_n = rho^n (1 - rho) / (1 - rho^(K+1)),   n = 0..K   (rho != 1)
        p_n = 1 / (K + 1)                                     (rho == 1)

    Arrivals that find K in system are lost (PASTA: ``p_block = p_K``).

    Returns ``rho`` (offered lam/mu), ``p_block``, ``throughput`` =
    lam (1 - p_K), ``utilization`` = 1 - p_0, ``number_in_system`` L =
    sum n p_n, ``number_in_queue`` Lq = L - (1 - p_0), and, by Little's law
    applied to admitted requests, ``response`` W = L / throughput and
    ``wait`` Wq = Lq / throughput.

    The probabilities are computed from log-weights, so large K and
    rho > 1 do not overflow; rho == 1 needs no special case.
    """
    lam = _positive("lam", lam)
    mu = _positive("mu", mu)
    K = _positive_int("K", K)
    rho = lam / mu
    log_rho = math.log(rho)
    logs = [n * log_rho for n in range(K + 1)]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = math.fsum(weights)
    p = [w / total for w in weights]
    p_block = p[K]
    throughput = lam * (1.0 - p_block)
    number_in_system = math.fsum(n * pn for n, pn in enumerate(p))
    number_in_queue = number_in_system - (1.0 - p[0])
    return {
        "rho": rho,
        "p_block": p_block,
        "throughput": throughput,
        "utilization": 1.0 - p[0],
        "number_in_system": number_in_system,
        "number_in_queue": number_in_queue,
        "response": number_in_system / throughput,
        "wait": number_in_queue / throughput,
    }


# --------------------------------------------------------------------------
# capacity bounds


def thread_pool_saturation(threads: int, cpu: float, wait: float, cores: float) -> float:
    """Saturation throughput (requests/s) of a thread-per-request server.

    Each request holds a thread for ``cpu + wait`` seconds (CPU time plus
    blocking I/O wait) and a core for ``cpu`` seconds.  Two resources cap the
    throughput: N threads each completing at most 1/(cpu + wait) requests
    per second, and ``cores`` cores each completing 1/cpu::

        X_max = min(threads / (cpu + wait), cores / cpu)

    (the utilisation law applied to each resource; queueing for the CPU
    stretches the holding time, so this is the throughput reached only in
    the limit of an infinitely long queue in front of the pool).  With
    ``cpu == 0`` the CPU bound is infinite.
    """
    threads = _positive_int("threads", threads)
    cpu = _non_negative("cpu", cpu)
    wait = _non_negative("wait", wait)
    cores = _positive("cores", cores)
    if cpu + wait <= 0:
        raise ValueError("cpu + wait must be > 0")
    cpu_bound = cores / cpu if cpu > 0 else math.inf
    return min(threads / (cpu + wait), cpu_bound)


def closed_loop_throughput_bound(n: int, think: float, service: float, cores: float) -> float:
    """Asymptotic upper bound on the throughput of a closed-loop workload.

    ``n`` clients each alternate a think time Z = ``think`` and a request of
    service demand D = ``service`` on a station with ``cores`` servers.  The
    asymptotic bound of operational analysis (Lazowska et al. 1984, ch. 5)::

        X(n) <= min(n / (Z + D), cores / D)

    **A bound, not a prediction**: the first term ignores queueing (exact only
    for light load), the second is the saturation rate of the station.  The
    true throughput lies below both and approaches the bound asymptotically
    as n -> 0 and n -> infinity.
    """
    n = _positive_int("n", n)
    think = _non_negative("think", think)
    service = _positive("service", service)
    cores = _positive("cores", cores)
    return min(n / (think + service), cores / service)


# --------------------------------------------------------------------------
# polling


def short_polling(event_rate: float, interval: float, one_way_latency: float) -> dict:
    """Short (periodic) polling by one client.

    Assumptions: events are created at the server as a Poisson process of
    rate lambda = ``event_rate``; the client's polls reach the server at
    fixed times spaced T = ``interval`` apart; a poll is answered
    instantaneously and carries every event created since the previous
    poll; the response reaches the client ``one_way_latency`` later.

    * ``empty_fraction`` = P(no event in a window of length T) = exp(-lambda T)
    * ``latency_mean`` (event creation -> arrival at the client) =
      T/2 + one_way_latency: an event's position inside its polling window
      is uniform (Poisson arrivals), so it waits T/2 on average for the poll.
    * ``polls_per_second_per_client`` = 1/T
    """
    lam = _positive("event_rate", event_rate)
    T = _positive("interval", interval)
    one_way = _non_negative("one_way_latency", one_way_latency)
    return {
        "empty_fraction": math.exp(-lam * T),
        "latency_mean": T / 2.0 + one_way,
        "polls_per_second_per_client": 1.0 / T,
    }


def long_polling(event_rate: float, timeout: float, rtt: float) -> dict:
    """Long polling by one client, exact renewal-reward means.

    Model.  Events are created at the server as a Poisson process of rate
    lambda.  The client keeps one poll open at the server.  The server
    answers the held poll at the first event (carrying it) or, if none
    arrives, with an empty response after the timeout H = ``timeout``.  The
    response travels one way (rtt/2) to the client, which re-polls at once;
    the new poll travels one way back, so it reaches the server ``rtt``
    after the previous answer.  Events created during this *gap* accumulate
    at the server; when the new poll arrives with events pending, the server
    answers immediately with all of them.  One-way latency is rtt/2 in both
    directions.

    Renewal cycle.  Start a cycle when the server sends a response.  The
    cycle is a gap of length rtt followed by a hold Y:

    * N = number of events in the gap ~ Poisson(lambda rtt);
      q = P(N = 0) = exp(-lambda rtt);
    * if N > 0 the next poll is answered on arrival: Y = 0;
    * if N = 0, Y = min(X, H), X ~ Exp(lambda) (memoryless), and
      E[min(X, H)] = (1 - exp(-lambda H)) / lambda.

    Cycles are i.i.d. (Poisson increments on disjoint intervals), so:

    * cycle_mean  E[C] = rtt + q (1 - exp(-lambda H)) / lambda
    * requests_per_second = 1 / E[C]   (one poll / one response per cycle)
    * empty_fraction = P(N = 0 and X >= H) = exp(-lambda (rtt + H))

    Latency (renewal-reward: expected total latency of the events of one
    cycle divided by the expected number of events of one cycle).

    * An event at time u in [0, rtt) of the gap waits rtt - u for the poll
      and then rtt/2 for the response.  Expected sum over the gap:
      lambda * integral_0^rtt (rtt - u + rtt/2) du = lambda rtt^2.
    * At most one event falls in the hold (the first one ends it); it
      arrives with probability q (1 - exp(-lambda H)) and has latency rtt/2.
    * Events in the cycle: lambda E[C] = lambda rtt + q (1 - exp(-lambda H)).

    Hence::

        latency_mean = [lambda rtt^2 + q (1 - exp(-lambda H)) rtt/2] / (lambda E[C])
                     = rtt/2 + rtt^2 / (2 E[C])

    Checks: H -> 0 gives periodic polling with period rtt (latency rtt);
    lambda -> infinity also gives latency rtt; lambda -> 0 gives
    rtt/2 + rtt^2 / (2 (rtt + H)).

    Note: the simpler E[C] = rtt + E[min(X, H)] and empty fraction
    exp(-lambda H) ignore that a poll arriving with pending events is
    answered at once; they are exact only when rtt = 0.

    Parameters
    ----------
    event_rate: lambda (1/s), > 0.
    timeout:    H (s), >= 0.
    rtt:        client<->server round-trip time (s), >= 0.
    """
    lam = _positive("event_rate", event_rate)
    H = _non_negative("timeout", timeout)
    rtt = _non_negative("rtt", rtt)
    if rtt + H <= 0:
        raise ValueError("timeout + rtt must be > 0 (otherwise the client polls infinitely fast)")
    q = math.exp(-lam * rtt)
    hold_mean = q * -math.expm1(-lam * H) / lam
    cycle = rtt + hold_mean
    return {
        "requests_per_second": 1.0 / cycle,
        "empty_fraction": math.exp(-lam * (rtt + H)),
        "latency_mean": rtt / 2.0 + rtt * rtt / (2.0 * cycle),
        "cycle_mean": cycle,
    }


# --------------------------------------------------------------------------
# pubsub: broker delivery (push with prefetch, pull with long-poll fetch)


def prefetch_utilization(prefetch: int, processing: float, deliver_latency: float,
                         ack_latency: float) -> float:
    """Utilisation of a push consumer limited by its prefetch window.

    Model.  The broker's queue is never empty; the consumer processes one
    message at a time for ``processing`` seconds and acks each message as
    soon as it is processed; an ack reaches the broker ``ack_latency`` later,
    which at once sends the next message, arriving ``deliver_latency`` later.
    Each of the ``prefetch`` unacked "slots" therefore cycles through
    processing + ack_latency + deliver_latency, during which the consumer is
    busy for ``processing`` only.  With p slots the consumer is busy
    p * processing out of every cycle, capped at 1 (it cannot work on two
    messages at once)::

        utilisation = min(1, p * s / (s + d_ack + d_deliver))

    This is the RabbitMQ team's worked example ("Finding bottlenecks with
    RabbitMQ 3.3", 2014): s = 4 ms, 50 ms each way gives 4/104 = 3.8% at
    prefetch 1, 50% at 13 and 100% at 26.  Broker processing time is
    neglected (add it to either latency).
    """
    p = _positive_int("prefetch", prefetch)
    s = _positive("processing", processing)
    d = _non_negative("deliver_latency", deliver_latency) + _non_negative("ack_latency", ack_latency)
    return min(1.0, p * s / (s + d))


def pull_fetch(byte_rate: float, min_bytes: float, max_wait: float, rtt: float,
               backlog_bytes: float = 0.0) -> dict:
    """One long-poll fetch of a pull consumer (Kafka's fetch.min.bytes /
    fetch.max.wait.ms), with the producers as a fluid of ``byte_rate`` B/s.

    The broker answers a fetch when ``min_bytes`` are ready after the
    consumer's position or when ``max_wait`` has passed since the fetch
    arrived.  If ``backlog_bytes`` are already ready when it arrives, the
    broker holds it for::

        hold = min(max(0, (B - b0) / r), max_wait)      (r = 0: max_wait if b0 < B)

    and the consumer sees ``fetch_latency = hold + rtt``.  With b0 = 0 this is
    the issue's form, ``min(B / r, max_wait) + rtt``; an idle topic (r = 0)
    makes every fetch wait the full ``max_wait``.

    A consumer that re-fetches as soon as a response arrives (negligible
    processing) finds the bytes produced during the round trip waiting, so in
    steady state b0 = r * rtt: use :func:`pull_fetch` with
    ``backlog_bytes=byte_rate * rtt`` (returned as ``steady_hold`` and
    ``steady_fetch_latency``).  Discrete messages of size m change the hold
    by less than one message inter-arrival time m / r.
    """
    r = _non_negative("byte_rate", byte_rate)
    B = _non_negative("min_bytes", min_bytes)
    W = _non_negative("max_wait", max_wait)
    rtt = _non_negative("rtt", rtt)
    b0 = _non_negative("backlog_bytes", backlog_bytes)

    def hold_for(backlog: float) -> float:
        if backlog >= B:
            return 0.0
        if r == 0:
            return W
        return min((B - backlog) / r, W)

    hold = hold_for(b0)
    steady = hold_for(r * rtt)
    return {"hold": hold, "fetch_latency": hold + rtt,
            "steady_hold": steady, "steady_fetch_latency": steady + rtt}


def fanout_bytes(payload_in: float, messages: int, subscribers: int, header: float) -> float:
    """Bytes out of a broker that fans ``messages`` (``payload_in`` payload
    bytes in all) out to ``subscribers`` subscriptions, each copy sent once
    in its own frame with ``header`` bytes: ``S * payload_in + S * messages *
    header``.  Batching copies into fewer frames (pull) lowers the header
    term; redeliveries add their copies again."""
    S = _positive_int("subscribers", subscribers)
    return S * _non_negative("payload_in", payload_in) + S * int(messages) * _non_negative("header", header)


# topologies: stateful vs stateless, sidecar proxies (pattern modules
# commsim/patterns/stateful.py and commsim/patterns/sidecar.py)

__all__ += ["sidecar_added_latency", "proxy_cores", "stateless_store_added_latency",
            "consistent_hash_moved_fraction"]


def sidecar_added_latency(proxies: int, proxy_cpu: float, loopback: float,
                          mtls_cpu: float = 0.0, proxy_delay: float = 0.0) -> float:
    """Mean latency that ``proxies`` sidecar proxies add to one call at low load.

    Each proxy handles the request and the response (two legs); per request
    it spends ``proxy_cpu`` + ``mtls_cpu`` of CPU in all and ``proxy_delay``
    of non-CPU time on each leg, and the application's traffic crosses the
    loopback (one-way latency ``loopback``) once in each direction.  With no
    queueing (low load) the added mean is

        proxies * (proxy_cpu + mtls_cpu + 2 * proxy_delay + 2 * loopback),

    i.e. twice (proxy service time + loopback round trip) for the usual
    two-proxy call.
    """
    if isinstance(proxies, bool) or int(proxies) != proxies or proxies < 0:
        raise ValueError(f"proxies must be an integer >= 0, got {proxies!r}")
    for name, v in (("proxy_cpu", proxy_cpu), ("loopback", loopback), ("mtls_cpu", mtls_cpu),
                    ("proxy_delay", proxy_delay)):
        _non_negative(name, v)
    return proxies * (proxy_cpu + mtls_cpu + 2.0 * proxy_delay + 2.0 * loopback)


def proxy_cores(rate: float, proxies_per_request: float, cpu_per_request: float) -> float:
    """CPU cores the proxies burn: ``rate * proxies_per_request * cpu_per_request``.

    Linear in the request rate (CPU per request does not depend on load in
    the model: queueing delays requests but does not add work).  E.g. 0.35 ms
    per request per proxy is 0.35 vCPU per 1000 requests per second through
    a proxy, Istio's published figure.
    """
    _non_negative("rate", rate)
    _non_negative("proxies_per_request", proxies_per_request)
    _non_negative("cpu_per_request", cpu_per_request)
    return rate * proxies_per_request * cpu_per_request


def stateless_store_added_latency(store_one_way: float, store_service: float,
                                  login_fraction: float = 0.0) -> float:
    """Mean extra latency per operation of keeping sessions in a shared store,
    at low load (no store queueing): a read round trip on every request plus
    a write round trip for the fraction of operations that start with a login."""
    _non_negative("store_one_way", store_one_way)
    _non_negative("store_service", store_service)
    if not 0.0 <= login_fraction <= 1.0:
        raise ValueError(f"login_fraction must be in [0, 1], got {login_fraction!r}")
    return (1.0 + login_fraction) * (2.0 * store_one_way + store_service)


def consistent_hash_moved_fraction(before: int, after: int) -> float:
    """Expected fraction of keys that change owner when a consistent-hash ring
    grows from ``before`` to ``after`` equal servers: (after - before) / after
    (only the keys the new servers take move; Karger et al. 1997)."""
    b = _positive_int("before", before)
    a = _positive_int("after", after)
    if a < b:
        raise ValueError("after must be >= before")
    return (a - b) / a


# ------------------------------------------------------------ multiplexing ----

def page_load_round_trips(protocol: str, objects: int, connections: int = 6,
                          handshake_rtts: int = 0, max_streams: int = 100) -> int:
    """Round trips to load a page of ``objects`` objects when every object is
    requested at once, sizes are negligible, nothing is lost and the server
    answers instantly.

    * ``http1``: ``k = min(connections, objects)`` connections each carry one
      request at a time, so the objects take ``ceil(objects / k)`` rounds.
    * ``http2`` / ``http3``: one connection carries ``max_streams`` requests
      at once: ``ceil(objects / max_streams)`` rounds (one when the limit is
      not reached).

    Connections open in parallel, so the handshakes add ``handshake_rtts``
    once (TCP 1, TCP + TLS 1.3 2, TCP + TLS 1.2 3, QUIC 1, QUIC 0-RTT 0).
    """
    if objects < 1 or connections < 1 or max_streams < 1 or handshake_rtts < 0:
        raise ValueError("objects, connections and max_streams must be >= 1, "
                         "handshake_rtts >= 0")
    per_round = min(connections, objects) if protocol == "http1" else max_streams
    if protocol not in ("http1", "http2", "http3"):
        raise ValueError(f"unknown protocol {protocol!r}")
    return handshake_rtts + math.ceil(objects / per_round)
