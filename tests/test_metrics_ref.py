"""Units as data (issue 12): `commsim metrics`, docs/metrics.md, units.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from commsim.cli import main
from commsim.experiment import metricsref
from commsim.metrics import METRICS
from commsim.patterns import registry

ROOT = Path(__file__).resolve().parents[1]


def test_docs_metrics_md_is_fresh():
    doc = ROOT / "docs" / "metrics.md"
    assert doc.exists(), "run: python -m commsim metrics --markdown --write docs/metrics.md"
    assert doc.read_text() == metricsref.markdown(), (
        "docs/metrics.md is stale; regenerate it with "
        "`python -m commsim metrics --markdown --write docs/metrics.md`")


def test_every_metric_listed_with_unit_and_patterns(capsys):
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    for name, m in METRICS.items():
        assert f"\n{name}  [" in out or out.startswith(f"{name}  ["), name
    by = metricsref.reported_by()
    # every pattern reports throughput-like foundation metrics, and each
    # pattern's metrics are a subset of the defined ones
    assert set(by["bytes_total"]) == set(registry())
    assert "server_memory_max" in METRICS and "sse" in by["server_memory_max"]
    assert "sidecar" in by["proxy_vcpu_per_krps"] and "sse" not in by["proxy_vcpu_per_krps"]


def test_fractions_have_the_fraction_unit():
    for name, m in METRICS.items():
        if name.endswith(("_utilization", "_fraction")) or name in ("availability", "success_rate"):
            assert m.unit == "fraction", name


def test_units_csv_beside_results(tmp_path):
    cfg = {"name": "u", "pattern": "request_response", "seed": 1, "duration": "0.3s",
           "replications": 2, "clients": {"count": 5, "mode": "async", "rate": "20/s"},
           "sweep": {"clients.rate": ["10/s", "20/s"]}}
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "res"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    units = pd.read_csv(out / "units.csv", keep_default_na=False)
    by = dict(zip(units["column"], units["unit"]))
    runs = pd.read_csv(out / "runs.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert set(by) == set(runs.columns) | set(summary.columns)
    assert by["latency_p99"] == "s" and by["bandwidth"] == "B/s" and by["clients.rate"] == "1/s"
    assert by["latency_p99_ci95"] == "s" and by["server_utilization"] == "fraction"
    assert by["unstable"] == "true/false"
    assert all(units["meaning"].str.len() > 0)
