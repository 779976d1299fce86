"""The benchmark's own machinery on fake work: the process-tree memory sampler and the table (no models)."""

from __future__ import annotations

import sys

import pytest

from bench import sampler, table

MIB = 1024 * 1024
# A parent that allocates nothing and waits for a child holding 80 MiB of written (resident) pages.
TREE = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "\"import time; b = b'x' * (80 << 20); time.sleep(1.0)\"], check=True)")


@pytest.mark.parametrize("use_psutil", [False, pytest.param(True, marks=pytest.mark.skipif(
    sampler.psutil is None, reason="psutil not installed"))])
def test_sampler_counts_descendants(use_psutil):
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", TREE])
    s = sampler.PeakSampler(proc.pid, 0.02, use_psutil=use_psutil)
    s.start()
    proc.wait()
    peak = s.stop()
    assert proc.returncode == 0
    assert s.samples > 1
    assert peak > 80 * MIB  # the child's 80 MiB plus both interpreters


def test_measure_reports_wall_and_exit(tmp_path):
    m = sampler.measure([sys.executable, "-c", "print('hi'); raise SystemExit(3)"], log=tmp_path / "log.txt")
    assert m["returncode"] == 3 and m["wall"] > 0
    assert (tmp_path / "log.txt").read_text().strip() == "hi"
    assert sampler.tree_rss(2 ** 22 + 12345) == 0  # no such process


def _run(leg, wall, rss_mib, stages, model="minilm", **extra):
    return {"model": model, "leg": leg, "wall": wall, "peak_rss": rss_mib * MIB, "returncode": 0,
            "stages": stages, **extra}


def test_table_medians_and_ratios():
    raw = {"name": "fake", "created": "2026-01-01T00:00:00+00:00",
           "config": {"runs": 3, "models": ["minilm"], "order": ["prime", "cold", "plain", "warm"], "interval": 0.05},
           "machine": {"platform": "Linux-x", "machine": "x86_64", "processor": "Fake CPU", "cpus": 2,
                       "ram_bytes": 24 * 1024 ** 3, "python": "3.11.7", "commit": "abc1234",
                       "versions": {"torch": "2.13.0", "jax": None}, "loadavg_start": [1, 2, 3], "loadavg_end": None},
           "imports": {"import_parity_us": 1234, "import_parity_wall": 0.05, "help_wall": 0.12, "help_frameworks": []},
           "runs": [_run("prime", 99.0, 9999, {})]
           + [_run("cold", w, 3000, {"pt.load": w / 4, "check": w - 2}) for w in (30.0, 20.0, 21.0)]
           + [_run("cold", 500.0, 1, {}, error="FileNotFoundError: results.json")]  # a crash: counted, not timed
           + [_run("plain", w, 1500, {"imports": 4.0, "total": w - 1}) for w in (10.0, 11.0, 9.0)]
           + [_run("warm", w, 1200, {"check": w - 2}, cache={"tf": "hit", "flax": "hit"}) for w in (4.0, 4.4, 3.9)]}
    text = table.render(raw)
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in text.splitlines() if line.startswith("| minilm |") and line.count("|") == 9}
    cold, plain, warm = (rows[table.LEGS[leg]] for leg in ("cold", "plain", "warm"))
    assert cold[2] == "3 (+1 failed)" and cold[3] == "21.00 (20.00–30.00)" and cold[4] == "3000"
    assert cold[5] == "2.10×" and cold[6] == "2.00×"  # medians 21 / 10 and 3000 / 1500
    assert plain[5] == "1.00×" and warm[5] == "0.40×" and warm[6] == "0.80×"
    assert "9999" not in text  # the priming run is not a measured run
    assert "| minilm | A parity check, cold (--no-cache) | pt.load | 5.25 |" in text
    assert "| minilm | A parity check, warm (conversion cache) | conversion cache | flax hit, tf hit |" in text
    assert "| frameworks imported by `--help` | none |" in text
    assert "2 CPUs, 24.0 GiB RAM" in text and "torch 2.13.0" in text and "jax" not in text.split("\n")[3]


def test_scale_table_from_raw_points():
    from bench import scale

    secs = {fw: {"load": 10.0 + i, "run": 0.5 * (i + 1), "total": 12.0} for i, fw in enumerate(("pt", "tf", "flax"))}
    raw = {"name": "t", "created": "2026-01-01T00:00:00+00:00",
           "machine": {"platform": "Linux", "cpus": 2, "ram_bytes": 24 * 1024 ** 3, "commit": "abc"},
           "points": [{"axis": "batch", "model": "minilm", "batch": 8, "length": 128, "wall": 30.25,
                       "peak_rss": 2048 * MIB, "returncode": 0, "seconds": secs, "compare": 0.75, "parallel": True},
                      {"axis": "model", "model": "bertbase", "batch": 128, "length": 128, "wall": 99.0,
                       "peak_rss": 9000 * MIB, "returncode": 3, "error": "KeyError: 'frameworks'"}]}
    text = scale.render(raw)
    assert "| batch | minilm | 8 x 128 | 30.2 | 2048 | 10.0/11.0/12.0 | 0.5/1.0/1.5 | 0.8 | parallel | 0 |" in text
    assert "| model | bertbase | 128 x 128 | 99.0 | 9000 | – | – | – | – | 3 |" in text
    # Every row truncates to the longest length measured: the sequence length is what --max-length says.
    assert len(scale.LONG_TEXT.split()) > 2 * max(length for _, _, _, length in scale.POINTS)


def test_import_floor_script_imports_only_its_framework():
    import subprocess
    import sys

    from bench.imports import script
    from parity.execution.executor import child_env

    code = script(["flax"], "Bert") + "\nprint(sorted(m for m in ('torch', 'tensorflow', 'jax') if sys.modules.get(m)))"
    out = subprocess.run([sys.executable, "-c", code], env=child_env("cpu", {"flax"}), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['jax']"
    assert "dict.fromkeys([])" in script(["pt", "tf", "flax"], "Bert")  # one process: nothing blocked


def test_suite_table_medians_ratios_and_verdicts():
    from bench.suite import render

    verdicts = {"gpt2": True, "bert-drifted": False}
    each = {"gpt2": {"wall": 8.0, "peak_rss": 1500 * MIB, "returncode": 0},
            "bert-drifted": {"wall": 9.0, "peak_rss": 1700 * MIB, "returncode": 1}}
    runs = ([{"leg": "suite", "wall": w, "cpu": 9.0, "peak_rss": 2000 * MIB, "verdicts": verdicts}
             for w in (6.0, 5.0, 7.0)]
            + [{"leg": "suite-nopool", "wall": 15.0, "peak_rss": 1900 * MIB, "verdicts": verdicts}]
            + [{"leg": "singles", "wall": w, "cpu": 30.0, "peak_rss": 1700 * MIB, "verdicts": verdicts, "each": each}
               for w in (20.0, 17.0)]
            + [{"leg": "plain", "wall": 16.0, "peak_rss": 1600 * MIB}])
    text = render({"name": "t", "config": {"runs": 3}, "runs": runs})
    assert "| suite | 6.0 (5.0-7.0) | 9.0 | 2000 | 0.32x | 0.30x |" in text
    assert "| singles | 18.5 (17.0-20.0) | 30.0 | 1700 | 1.00x | 1.00x |" in text
    assert "gpt2 1500 MiB, bert-drifted 1700 MiB" in text and "same verdicts in every leg: True" in text
