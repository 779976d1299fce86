"""The conversion cache: a re-check loads converted weights natively; damaged entries are rebuilt."""

import threading
import time

import pytest

from parity.contracts import conversion_cache as cache


def _checks(cli, tmp_path, folder, frameworks, *runs):
    """One `parity check` per item of ``runs`` (extra arguments), all sharing one cache under tmp_path; fresh
    workers each (PARITY_POOL=0): what a new process finds on disk is the subject, not a kept worker's memory."""
    env = {"PARITY_CACHE_DIR": str(tmp_path / "cache"), "PARITY_POOL": "0"}
    args = ("check", folder, "--frameworks", frameworks)
    results = [cli(*args, "--report-dir", tmp_path / f"r{i}", *extra, env=env) for i, extra in enumerate(runs)]
    assert all(r.code == 0 for r in results), [r.err for r in results]
    return results


@pytest.mark.slow
def test_second_check_hits_the_cache_with_identical_numbers(cli, tiny, tmp_path):
    env = {"PARITY_CACHE_DIR": str(tmp_path / "cache"), "PARITY_POOL": "0"}
    args = ("check", tiny / "bert-pt-bin", "--frameworks", "pt,tf")  # .bin: TF converts through torch
    first, second = _checks(cli, tmp_path, tiny / "bert-pt-bin", "pt,tf", (), ())
    tf1, tf2 = first.results["frameworks"]["tf"], second.results["frameworks"]["tf"]
    assert tf1["cache"] == "stored" and tf2["cache"] == "hit"
    assert tf2["converted_from"] == "pt" and tf2["weights"] == "pytorch_model.bin"
    assert tf1["imported"] == ["tensorflow", "torch"] and tf2["imported"] == ["tensorflow"]
    assert any("from the cache" in n for n in tf2["load"]["notes"])
    rows1, rows2 = first.comparison("tf")["outputs"], second.comparison("tf")["outputs"]
    assert [r["max_abs_diff"] for r in rows1] == [r["max_abs_diff"] for r in rows2]
    assert "(from pt, cached)" in second.out
    # The tokenized batch too (parity.planning.batch_cache): same arrays, so the same numbers above.
    assert (first.results["inputs"]["cache"], second.results["inputs"]["cache"]) == ("stored", "hit")
    assert "inputs tokenizer (cached)" in second.out

    # A damaged entry is noticed, removed and rebuilt, never loaded.
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if len(p.name) == 32]
    weights = entry / "tf_model.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    third = cli(*args, "--report-dir", tmp_path / "r3", env=env)
    assert third.code == 0 and third.results["frameworks"]["tf"]["cache"] == "stored"
    assert [r["max_abs_diff"] for r in third.comparison("tf")["outputs"]] == [r["max_abs_diff"] for r in rows1]

    off = cli(*args, "--report-dir", tmp_path / "r4", "--no-cache", env=env)
    assert off.results["frameworks"]["tf"]["cache"] is None


@pytest.mark.slow
def test_recheck_after_a_flax_conversion_compiles_nothing(cli, tiny, tmp_path):
    """The converting check (from_pt) and the re-check (cached msgpack, _do_init=False) run the same ops."""
    first, second = _checks(cli, tmp_path, tiny / "bert-pt", "pt,flax", (), ())
    fx1, fx2 = first.results["frameworks"]["flax"], second.results["frameworks"]["flax"]
    assert fx1["cache"] == "stored" and fx2["cache"] == "hit"
    assert fx2["compile_cache"]["requests"] > 10
    assert fx2["compile_cache"]["hits"] == fx2["compile_cache"]["requests"]


@pytest.mark.slow
def test_flax_recheck_loads_compiled_ops_with_identical_numbers(cli, tiny, tmp_path):
    first, second, off = _checks(cli, tmp_path, tiny / "bert-flax", "pt,flax", (), (), ("--no-cache",))
    c1, c2 = first.results["frameworks"]["flax"]["compile_cache"], second.results["frameworks"]["flax"]["compile_cache"]
    assert c1["dir"] == str(tmp_path / "cache" / "xla") and c1["requests"] > 10 and c1["hits"] < c1["requests"]
    assert c2["requests"] == c1["requests"] and c2["hits"] == c2["requests"]  # nothing compiled again
    assert "compile_cache" not in off.results["frameworks"]["flax"]
    assert "compile_cache" not in first.results["frameworks"]["pt"]
    metrics = [[(r["max_abs_diff"], r["mean_abs_diff"]) for r in run.comparison("flax")["outputs"]]
               for run in (first, second, off)]
    assert metrics[0] == metrics[1] == metrics[2]


def test_concurrent_writers_leave_one_intact_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path))
    target = tmp_path / "k"
    landed = []

    def save(folder):
        time.sleep(0.2)  # both writers are inside save() at once
        (folder / "tf_model.h5").write_bytes(b"weights" * 100)

    threads = [threading.Thread(target=lambda: landed.append(cache.store("tf", target, save, {"missing": []})))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(landed) == [False, True]
    assert cache.lookup("tf", "k") == target
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary folders left


def test_stale_meta_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path))
    cache.store("flax", tmp_path / "k", lambda f: (f / "flax_model.msgpack").write_bytes(b"\x80"), {})
    (tmp_path / "k" / "flax_model.msgpack").write_bytes(b"\x81")  # same size, other content
    assert cache.lookup("flax", "k") is None and not (tmp_path / "k").exists()


def test_file_digest_is_remembered_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    import hashlib
    import os

    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "model.safetensors"
    data = bytes(range(256)) * 8192  # 2 MiB
    f.write_bytes(data)
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    assert cache.file_digest(f) == sha(data)
    assert not (tmp_path / "cache" / "digests").exists()  # just written: not settled, not remembered

    monkeypatch.setattr(cache, "SETTLED_SECONDS", 0.0)
    time.sleep(0.01)
    assert cache.file_digest(f) == sha(data)
    (record,) = (tmp_path / "cache" / "digests").iterdir()
    # The record answers while the stat matches: prove it by making it name another digest.
    record.write_text(record.read_text().replace(sha(data), "0" * 64))
    assert cache.file_digest(f) == "0" * 64

    # Same size, same mtime, new content: ctime moves, so the file is hashed again.
    st = f.stat()
    time.sleep(0.05)  # past a coarse timestamp tick, so the write's ctime differs
    changed = data[::-1]
    f.write_bytes(changed)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert cache.file_digest(f) == sha(changed)

    small = tmp_path / "config.json"
    small.write_text("{}")
    assert cache.file_digest(small) == sha(b"{}")
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1  # small files are always hashed


def test_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", "off")
    assert cache.root() is None and cache.lookup("tf", "anything") is None
