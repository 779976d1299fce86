"""The HTML report in a real headless Chromium: loads, no console errors, no network, a screenshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import chromium
from parity.report import html, index

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"

pytestmark = pytest.mark.skipif(
    chromium.find() is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; `make test` installs it as root)")


@pytest.mark.parametrize("name", ["fail", "unsupported"])
def test_report_opens_in_headless_chromium(tmp_path, name):
    res = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    page = tmp_path / "report.html"
    page.write_text(html.render(res), encoding="utf-8")
    shot = tmp_path / "report.png"
    got = chromium.visit(page, shot, width=1000)
    assert got["errors"] == []
    assert got["requests"] == [] and got["document_requests"] == 1  # only the file itself
    assert got["title"] == f"parity {'FAIL' if name == 'fail' else 'PASS'}: {res['checkpoint']['path']}"
    assert got["text"].lstrip().startswith("parity report:")
    if name == "fail":
        # The hostile input text is shown as text, not run as a script.
        assert "<script>alert('x')</script> & \"quotes\" | pipes" in got["text"]
        assert "First divergence: hidden_states.2" in got["text"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and got["png_bytes"] == len(data) > 20_000
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width == 1000 and height == got["size"][1] > 600


def test_index_opens_without_errors(tmp_path):
    entries = [(f"{n}/report.html", json.loads((FIXTURES / f"{n}.json").read_text())) for n in ("pass", "fail")]
    page = tmp_path / "index.html"
    page.write_text(index.render(entries), encoding="utf-8")
    got = chromium.visit(page, None, width=900, height=600)
    assert got["errors"] == [] and got["requests"] == []
    assert "1 pass, 1 fail" in got["text"]
