"""``commsim compare``: paired differences under common random numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import commsim
from commsim import theory
from commsim.cli import main
from commsim.errors import ConfigError
from commsim.experiment import output
from commsim.experiment.compare import COLUMNS, compare, describe, sentence
from commsim.experiment.stats import t_quantile

LAM = 500.0  # requests/s: 100 async clients at 5/s


def mm1(mean_service: str, seed: int = 1, reps: int = 5, duration: str = "20s") -> dict:
    """Request-response with no bytes and no latency on one core: M/M/1."""
    return {"name": "mm1", "pattern": "request_response", "seed": seed, "duration": duration,
            "warmup": "2s", "replications": reps,
            "clients": {"count": 100, "mode": "async", "rate": "5/s"},
            "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": mean_service}},
            "request_response": {"request_header": "0B", "response_header": "0B",
                                 "response_body": "0B"}}


@pytest.fixture(scope="module")
def runs():
    return {"a": commsim.run(mm1("1ms")), "b": commsim.run(mm1("0.8ms"))}


def row(table: pd.DataFrame, metric: str):
    return table[table["metric"] == metric].iloc[0]


def test_known_difference_is_significant_with_the_right_sign(runs):
    table = compare(runs["a"], runs["b"])
    assert list(table.columns) == COLUMNS
    r = row(table, "latency_mean")
    true_a = theory.mm1(LAM, 1000.0)["response"]
    true_b = theory.mm1(LAM, 1250.0)["response"]
    true = true_b - true_a                       # -0.667 ms, B is 33% faster
    assert r["significant"] and r["diff"] < 0 and r["method"] == "paired-t" and r["n"] == 5
    # The theory lies inside the 99% paired interval (widened from the 95% one).
    half99 = (r["diff_ci95_high"] - r["diff"]) * t_quantile(0.995, 4) / t_quantile(0.975, 4)
    assert abs(r["diff"] - true) <= half99, (r["diff"], true, half99)
    assert r["unit"] == "s"
    util = row(table, "server_utilization")  # rho 0.5 -> 0.4: 20% lower
    assert util["significant"] and util["rel_ci95_low"] < -0.2 < util["rel_ci95_high"]
    assert "B is" in sentence(r) and "lower than A (significant" in sentence(r)


def test_identical_configs_give_zero_difference(runs):
    again = commsim.run(mm1("1ms"))
    table = compare(runs["a"], again)
    assert (table["diff"] == 0).all()
    assert not table["significant"].any()
    assert (table["diff_ci95_low"] == 0).all() and (table["diff_ci95_high"] == 0).all()
    assert "no difference" in describe(table)


def test_pairing_uses_the_seeds(runs):
    other_seed = commsim.run(mm1("0.8ms", seed=2))
    with pytest.raises(ConfigError, match="do not pair.*--unpaired"):
        compare(runs["a"], other_seed)
    welch = compare(runs["a"], other_seed, unpaired=True)
    assert (welch["method"] == "welch").all()
    assert any("Welch" in n for n in welch.attrs["notes"])
    # Common random numbers make the paired interval much narrower than the
    # unpaired one on the same pairs of configurations.
    paired = row(compare(runs["a"], runs["b"]), "latency_mean")
    unpaired = row(compare(runs["a"], runs["b"], unpaired=True), "latency_mean")
    assert paired["diff"] == pytest.approx(unpaired["diff"])
    assert (paired["diff_ci95_high"] - paired["diff"]) < 0.5 * (unpaired["diff_ci95_high"] - unpaired["diff"])


def test_one_folder_two_values_and_the_cli(tmp_path, capsys):
    cfg = mm1("1ms", reps=3, duration="5s")
    cfg["sweep"] = {"clients.rate": [2, 6], "server.cores": [1, 2]}
    result = commsim.run(cfg)
    folder = tmp_path / "mm1"
    output.write_tables(result, folder)
    table = compare(folder, key="clients.rate", values=["2/s", "6"])
    assert table.attrs["keys"] == ["server.cores"] and len(set(table["server.cores"])) == 2
    thr = table[table["metric"] == "throughput"]
    assert thr["significant"].all() and (thr["rel_diff"] > 1.5).all()  # 3x the load
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--key", "clients.rate", "--values", "2", "6",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "at server.cores=1:" in printed and "throughput: B is" in printed
    csv = pd.read_csv(out / "compare.csv")
    assert {"unit", "diff_ci95_low", "p_value"} <= set(csv.columns)
    assert (out / "compare.png").stat().st_size > 1000
    # Bad input: exit 2 with the key named, nothing written.
    assert main(["compare", str(folder), "--key", "clients.rate", "--values", "2", "7",
                 "--out", str(tmp_path / "x")]) == 2
    assert "no value '7'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["compare", str(folder), "--key", "clients.count", "--values", "1", "2"]) == 2
    assert main(["compare", str(tmp_path / "nothing"), str(folder)]) == 2
    # The comparison of other inputs is not overwritten without --force.
    other = tmp_path / "other"
    output.write_tables(commsim.run(mm1("1ms", reps=2, duration="2s")), other)
    output.write_tables(commsim.run(mm1("2ms", reps=2, duration="2s")), tmp_path / "other2")
    assert main(["compare", str(other), str(tmp_path / "other2"), "--out", str(out)]) == 2


def test_two_folders_match_sweep_points(tmp_path):
    base = mm1("1ms", reps=2, duration="3s")
    base["sweep"] = {"clients.rate": [2, 4]}
    faster = mm1("0.5ms", reps=2, duration="3s")
    faster["sweep"] = {"clients.rate": [4, 6]}
    a, b = tmp_path / "a", tmp_path / "b"
    output.write_tables(commsim.run(base), a)
    output.write_tables(commsim.run(faster), b)
    table = compare(a, b)
    assert set(table["clients.rate"]) == {4}
    notes = " ".join(table.attrs["notes"])
    assert "server.service_time" in notes and "no match" in notes
    assert row(table, "latency_mean")["diff"] < 0
    assert math.isfinite(row(table, "latency_mean")["p_value"])


def test_compare_csv_writes_whole_number_keys_as_integers(tmp_path):
    """A size key resolves to a float (64KiB -> 65536.0, a blank where null):
    compare.csv prints it as the user wrote it (65536), as runs.csv does."""
    cfg = mm1("1ms", reps=2, duration="2s")
    cfg["sweep"] = {"request_response.chunk_size": [None, "64KiB"], "clients.rate": [2, 6]}
    folder = tmp_path / "mm1"
    output.write_tables(commsim.run(cfg), folder)
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--key", "clients.rate", "--values", "2", "6",
                 "--out", str(out)]) == 0
    lines = (out / "compare.csv").read_text().splitlines()
    col = lines[0].split(",").index("request_response.chunk_size")
    assert {line.split(",")[col] for line in lines[1:]} == {"", "65536"}
