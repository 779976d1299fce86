"""Inline mode and worker processes give the same numbers; the Python API returns Results."""

import pytest

import parity

pytestmark = pytest.mark.slow


def test_inline_and_workers_agree(cli, tiny, tmp_path):
    workers = cli("check", tiny / "bert-pt", "--frameworks", "pt,tf,flax")
    assert workers.code == 0, workers.err
    inline = parity.check(tiny / "bert-pt", frameworks="pt,tf,flax", inline=True, report_dir=tmp_path / "inline")
    assert inline.passed and inline.exit_code == 0
    assert (tmp_path / "inline" / "results.json").is_file()
    for a, b in zip(workers.results["comparisons"], inline.comparisons):
        assert a["candidate"] == b["candidate"]
        for oa, ob in zip(a["outputs"], b["outputs"]):
            assert oa["name"] == ob["name"]
            assert oa["max_abs_diff"] == pytest.approx(ob["max_abs_diff"], rel=1e-6, abs=1e-12)
            assert oa["mean_abs_diff"] == pytest.approx(ob["mean_abs_diff"], rel=1e-6, abs=1e-12)
