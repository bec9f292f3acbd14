"""``commsim calibrate`` and the config loader's ``include:`` (issue 13).

The fit is checked on synthetic runs with known costs and sizes (so the
expected values are independent of the code under test), and end to end on
a tiny loopback run whose preset must load through ``include:``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from commsim.config import load
from commsim.errors import ConfigError
from commsim.testbed import calibrate as cal


# ------------------------------------------------------------- include ----
def test_include_merges_a_preset_under_the_files_own_keys(tmp_path):
    (tmp_path / "preset.yaml").write_text(
        "server:\n  cores: 1\n  service_time: 120us\nshort_polling:\n  request_header: 141B\n"
        "  response_header: 151B\n")
    (tmp_path / "exp.yaml").write_text(
        "include: preset.yaml\npattern: short_polling\nduration: 1s\n"
        "server:\n  service_time: 80us\n")
    cfg = load(tmp_path / "exp.yaml").points[0].config
    assert cfg["server"]["cores"] == 1                      # from the preset
    assert cfg["server"]["service_time"] == pytest.approx(80e-6)  # the file's own key wins
    assert cfg["short_polling"]["request_header"] == 141
    assert cfg["short_polling"]["response_header"] == 151


def test_include_errors_name_the_key(tmp_path):
    (tmp_path / "exp.yaml").write_text("include: missing.yaml\npattern: sse\n")
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "exp.yaml")
    assert "missing.yaml" in str(exc.value)
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "exp2.yaml").write_text("include: a.yaml\npattern: sse\n")
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "exp2.yaml")
    assert exc.value.key == "include"
    (tmp_path / "exp3.yaml").write_text("include: [1, 2]\npattern: sse\n")
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "exp3.yaml")
    assert exc.value.key == "include"
    # A bad key inside the preset is reported like one in the file.
    (tmp_path / "bad.yaml").write_text("server:\n  coers: 1\n")
    (tmp_path / "exp4.yaml").write_text("include: bad.yaml\npattern: sse\n")
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "exp4.yaml")
    assert "coers" in str(exc.value)


# ------------------------------------------------------- synthetic fits ----
COSTS = {"rr_exchange": 120e-6, "short_poll": 150e-6, "long_poll": 220e-6, "poll_update": 20e-6, "sse_frame": 90e-6, "ws_frame": 110e-6,
         "payload_kib": 1e-6, "connection_s": 2e-6, "run_s": 3e-3}


def synthetic_rows(noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for pattern in ("short_polling", "long_polling", "sse", "push", "request_response"):
        for clients in (100, 400, 1600):
            for rate in (0.2, 1.0):
                dur = 10.0
                updates = clients * rate * dur
                polls = clients * dur if pattern in ("short_polling", "request_response") \
                    else (updates if pattern == "long_polling" else 0)
                frames = updates if pattern in ("sse", "push") else 0
                r = {"_pattern": pattern, "_duration": dur,
                     "_resp_body": (200 if clients != 400 else 1500) * 1.0,
                     "_req_body": 0.0, "_source": "synthetic", "clients.count": clients,
                     "requests": polls, "responses": polls, "frames": frames,
                     "updates_delivered": updates if pattern != "request_response" else 0,
                     "connections_max": clients}
                w = cal.work_counts(r)
                cpu = sum(COSTS[k] * v for k, v in w.items())
                r["server_cpu_s"] = cpu * (1 + noise * rng.standard_normal())
                hdr_up, hdr_down, frame = 141, 151, (14 if pattern == "sse" else 4)
                # Sizes vary between runs so body bytes are not proportional
                # to the message counts (the fit can tell them apart).
                size = 200 if clients != 400 else 1500
                body = size * polls if pattern == "request_response" else size * updates
                r["bytes_payload"] = body
                r["bytes_up"] = hdr_up * polls
                r["bytes_down"] = (hdr_down * polls + body + (frame * frames))
                r["bytes_total"] = r["bytes_up"] + r["bytes_down"]
                r["segments"] = 3 * (polls + frames)
                r["bytes_transport"] = 52 * r["segments"]
                r["bytes_wire"] = r["bytes_total"] + r["bytes_transport"]
                r["acks"] = polls + frames
                rows.append(r)
    return rows


def test_header_sizes_are_recovered_exactly():
    h = cal.header_sizes(synthetic_rows())
    for p in ("short_polling", "long_polling", "request_response"):
        assert h[p]["request_header"] == pytest.approx(141)
        assert h[p]["response_header"] == pytest.approx(151)
    assert h["sse"]["frame_overhead"] == pytest.approx(14)
    assert h["push"]["frame_overhead"] == pytest.approx(4)
    assert h["sse"]["tcpip_bytes_per_segment"] == pytest.approx(52)


MAIN = {"short_polling": "short_poll", "long_polling": "long_poll", "sse": "sse_frame",
        "push": "ws_frame", "request_response": "rr_exchange"}


def test_cpu_fit_recovers_known_costs():
    fits = cal.fit_cpu(synthetic_rows())
    for pattern, fit in fits.items():
        assert fit["r2"] == pytest.approx(1.0, abs=1e-9)
        # The main cost comes back where it is identifiable: for streams.
        # (Here every client polls or requests once a second, so exchanges
        # and connection-seconds are proportional, and a long poll returns
        # exactly one update: only sums of those costs are identified; the
        # prediction is still exact.)
        if pattern in ("sse", "push"):
            assert fit["costs_s"][MAIN[pattern]] == pytest.approx(COSTS[MAIN[pattern]], rel=1e-6)
        for res in fit["residuals"]:
            assert res["rel"] == pytest.approx(0, abs=1e-6)


def test_cpu_fit_with_noise_reports_fit_quality():
    fits = cal.fit_cpu(synthetic_rows(noise=0.05, seed=3))
    for pattern, fit in fits.items():
        assert 0.8 < fit["r2"] < 1.0
        # 6 runs, 5% noise: each run's prediction within 4 sigma (20%).
        assert all(abs(res["rel"]) < 0.2 for res in fit["residuals"])
        assert len(fit["residuals"]) == 6


# --------------------------------------------------------- end to end ----
def test_calibrate_a_tiny_loopback_run_and_include_the_preset(tmp_path):
    pytest.importorskip("aiohttp")
    from commsim.testbed.run import run_testbed

    exp = load({"name": "tiny", "duration": "1.5s", "warmup": "0.5s",
                "pattern": "short_polling",
                "clients": {"count": 4}, "workload": {"event_rate": "3/s"},
                "short_polling": {"interval": "200ms"},
                "sweep": {"pattern": ["short_polling", "sse"]}})
    out = tmp_path / "tb"
    result, _ = run_testbed(exp, out, say=lambda _t: None)
    preset = tmp_path / "loopback.yaml"
    cal.calibrate([out], preset)
    fit = json.loads(preset.with_suffix(".json").read_text())
    runs = result.runs.set_index("pattern")
    sp = runs.loc["short_polling"]
    # HTTP/1.1 GETs of one client library: the same header every time.
    assert fit["headers"]["short_polling"]["request_header"] == pytest.approx(
        sp["bytes_up"] / sp["requests"])
    assert 14 <= fit["headers"]["sse"]["frame_overhead"] <= 16
    (tmp_path / "exp.yaml").write_text(f"include: {preset.name}\npattern: short_polling\n"
                                       "duration: 1s\n")
    cfg = load(tmp_path / "exp.yaml").points[0].config
    assert cfg["short_polling"]["request_header"] == pytest.approx(
        round(fit["headers"]["short_polling"]["request_header"], 1))
    assert cfg["server"]["cores"] == 1
