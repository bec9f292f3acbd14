"""report.html in a real headless browser (Debian's chromium, driven by the
``playwright`` package with the system browser: no browser download).

Checks: the page loads without console errors, every image renders
(``naturalWidth > 0``), every link resolves (in-page anchors exist, relative
file links point to files), and the page carries the key metrics, the
stability flags and the narrative.  Skips only where chromium is not
installed; CI (.ci/run) installs it first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from commsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("html")
    results = base / "results"
    # an overloaded point beside a light one (stability flags), twice: a
    # second folder of the same experiment must not collide with the first
    for folder in ("sync_vs_async", "sync_vs_async_again"):
        assert main(["run", str(ROOT / "experiments" / "sync_vs_async.yaml"), "--out", str(results / folder),
                     "--quiet", "--set", "replications=2", "--set", "duration=0.5s",
                     "--set", "sweep.sync_async.io_model=[thread_pool, event_loop]",
                     "--set", "sweep.clients.rate=[10/s, 75/s]"]) == 0
    cfg = {"name": "mm1", "pattern": "request_response", "seed": 3, "duration": "2s", "warmup": "0.2s",
           "replications": 2, "clients": {"count": 10, "mode": "async", "rate": "50/s"},
           "server": {"cores": 1, "service_time": {"dist": "exponential", "mean": "1ms"}},
           "request_response": {"request_header": 0, "response_header": 0, "response_body": 0},
           "sweep": {"clients.rate": ["20/s", "50/s"]},
           "plots": [{"name": "lat", "x": "clients.rate", "y": "latency_mean"}]}
    (base / "mm1.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(base / "mm1.yaml"), "--out", str(results / "mm1"), "--quiet"]) == 0
    assert main(["report", "--results", str(results), "--formats", "png"]) == 0
    return results


def test_report_files_and_content(report):
    page = (report / "report.html").read_text()
    md = (report / "REPORT.md").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    assert page.count('<img src="data:image/svg+xml;base64,') >= 3
    for text in (page, md):
        assert "threads blocked" in text and "wasted CPU (cores)" in text and "latency p99 (ms)" in text
        assert "queue growing" in text and "not in steady state" in text
        assert "Theory (M/M/1" in text and "Theory (thread-pool saturation" in text
    # one heading per folder, even for two folders of the same experiment
    assert md.count("\n## sync_vs_async\n") == 1 and md.count("\n## sync_vs_async_again\n") == 1
    assert "[sync_vs_async_again](#sync_vs_async_again)" in md
    assert "e-0" not in md.split("## mm1")[1].split("Figures:")[0]  # no e-notation in the tables


def test_markdown_links_resolve(report):
    import re

    md = (report / "REPORT.md").read_text()
    anchors = {m.lower() for m in re.findall(r"^## (.+)$", md, re.M)}
    for target in re.findall(r"\]\(([^)]+)\)", md):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert (report / target).exists(), target


def test_report_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        # CI installs chromium in .ci/run: there a missing browser is a failure,
        # not a skip; on a developer's machine without it, the test skips.
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed although CI should have installed it (.ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it in .ci/run")
    from playwright.sync_api import sync_playwright

    page_file = report / "report.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            assert errors == []
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({alt: e.alt, w: e.naturalWidth, ok: e.complete}))")
            assert len(images) >= 3
            assert [i for i in images if not (i["ok"] and i["w"] > 0)] == []
            links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
            ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
            assert links
            for href in links:
                url = urlparse(href)
                assert url.scheme == "file", href
                if url.fragment and unquote(url.path) == str(page_file):
                    assert url.fragment in ids, href
                else:
                    assert Path(unquote(url.path)).exists(), href
            assert page.locator("tr.unstable").count() >= 2  # thread_pool at 75/s, in both folders
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
