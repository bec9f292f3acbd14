"""Integers print as integers (issue 12, item 1): swept integer values and
integer parameters are written as integers in runs.csv, summary.csv, the
Parquet tables and the capacity tables (commsim/experiment/tables.py)."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from commsim.cli import main
from commsim.experiment.tables import for_writing


def _column(path, name):
    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


def test_swept_integers_are_written_as_integers(tmp_path):
    cfg = tmp_path / "ints.yaml"
    cfg.write_text(
        "name: ints\npattern: request_response\nduration: 0.3s\nwarmup: 0.1s\nreplications: 1\n"
        "clients: {count: 2}\n"
        "sweep:\n  clients.count: [2, 3]\n  request_response.chunk_size: [null, 16KiB]\n"
        "  clients.think_time: [0.5s, 0.25s]\n")
    out = tmp_path / "r"
    argv = ["run", str(cfg), "--out", str(out), "--quiet"]
    try:
        import pyarrow  # noqa: F401

        argv.append("--parquet")
    except ImportError:
        pass
    assert main(argv) == 0
    for name in ("runs.csv", "summary.csv"):
        path = out / name
        assert sorted(set(_column(path, "clients.count"))) == ["2", "3"]
        # a size (parsed to 16384.0) with a gap (null): integers, the blank kept
        assert sorted(set(_column(path, "request_response.chunk_size"))) == ["", "16384"]
        # a column with fractions keeps its notation
        assert sorted(set(_column(path, "clients.think_time"))) == ["0.25", "0.5"]
    assert set(_column(out / "runs.csv", "replication")) == {"0"}
    if "--parquet" in argv:
        runs = pd.read_parquet(out / "runs.parquet")
        assert str(runs["clients.count"].dtype) in ("int64", "Int64")
        assert str(runs["request_response.chunk_size"].dtype) == "Int64"
        assert runs["request_response.chunk_size"].isna().sum() == len(runs) // 2


def test_for_writing_leaves_fractions_metrics_and_the_original_alone():
    df = pd.DataFrame({"k": [1.0, 2.0, None], "r": [2.5, 10.0, 1.0], "b": [True, False, True],
                       "s": ["a", "b", "c"], "m": [1000.0, 2.0, 3.0]})
    out = for_writing(df, ["k", "r", "b", "s", "x"])
    assert out["k"].tolist()[:2] == [1, 2] and out["k"].isna().iloc[2]
    assert out.to_csv(index=False).splitlines()[1:] == ["1,2.5,True,a,1000.0", "2,10.0,False,b,2.0",
                                                        ",1.0,True,c,3.0"]
    assert df["k"].dtype == float  # the caller's table is not changed
    with pytest.raises(KeyError):
        out["x"]
