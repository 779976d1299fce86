"""pytest plugin (``pytest11`` entry point ``parity``): parity checks as test items.

Inert unless used: it only adds ``--parity-*`` options, the ``parity`` marker
and fixture, and collects ``parity.toml`` / ``pyproject.toml`` files that
declare checks (``[[checks]]`` / ``[[tool.parity.checks]]``).

Each declared check runs once per process (all its frameworks, worker
processes by default) and yields one item per pair, ``minilm[pt-vs-flax]``;
the items read the cached Results. Items of one check carry
``xdist_group(<check>)`` (and a scheduler hook that groups them by node id,
see pytest_xdist_make_scheduler), so under ``pytest -n N --dist loadgroup`` a checkpoint's weights load once per framework, on one
worker. ``--parity-report-dir DIR`` writes each check's results.json and
console text, HTML / Markdown / JUnit reports, and one index (index.json, index.md,
index.html) gathered from all workers.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from parity.contracts.atomic import write_atomic
from parity.execution.pool import Pool, enabled_by_env
from parity.execution.pool_limits import MAX_CHECKS, MAX_IDLE, MAX_RSS_BYTES, MAX_TEMPLATES, SOCKET_ENV

MARKER_KEYS = {"checkpoint", "task", "frameworks", "reference", "source", "texts", "texts_file", "batch_size",
               "max_length", "seed", "device", "atol", "rtol", "outputs", "tolerances", "inline", "baseline"}
ENTRIES = ".items"
_cache: dict = {}


def pytest_addoption(parser):
    g = parser.getgroup("parity", "framework parity checks (parity)")
    g.addoption("--parity-report-dir", metavar="DIR", help="write each check's results.json and reports, "
                "and one index.json / index.md / index.html for the run")
    g.addoption("--parity-inline", action="store_true", help="run frameworks in the test process (debugging)")
    g.addoption("--parity-frameworks", metavar="LIST", help="override the frameworks of every declared check")
    g.addoption("--parity-shard", metavar="I/N", help="run shard I of N (1-based): every check's pair items "
                "stay in one shard, and N shards together run every test once (CI matrices)")
    g.addoption("--parity-no-pool", action="store_true", help="a fresh worker per framework and check "
                "(default: one worker per framework and environment is kept between checks, parity.execution.pool; "
                "under xdist every worker of the run shares one pool on its machine)")
    g.addoption("--parity-pool-max-checks", metavar="N", type=int, default=None,
                help="checks one kept worker serves before it is replaced (default 50)")
    g.addoption("--parity-pool-max-rss", metavar="MIB", type=int, default=None,
                help="resident memory (MiB) above which an idle kept worker is replaced (default 4096)")
    g.addoption("--parity-pool-max-idle", metavar="N", type=int, default=None,
                help=f"idle kept workers at most; the least recently used beyond it stops (default {MAX_IDLE})")
    g.addoption("--parity-pool-max-templates", metavar="N", type=int, default=None,
                help="under xdist: processes kept with a framework imported that fork new kept workers "
                     f"(parity.execution.forkserver; default {MAX_TEMPLATES}, 0: none)")


def pytest_configure(config):
    config.addinivalue_line("markers", "parity(checkpoint, task=None, frameworks=None, **options): run a parity "
                            "check of checkpoint (a path, or the name of a fixture returning one) for this test; "
                            "options are parity check's (reference, atol, rtol, tolerances, outputs, baseline, ...)")


_PAIR_ID = re.compile(r"^(?P<check>.*(?:parity|pyproject)\.toml::.+)\[[A-Za-z0-9:]+-vs-[A-Za-z0-9:]+\]$")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Keep each declared check's items on one worker under ``--dist loadgroup``.

    xdist 3.8 marks groups by rewriting ``item._nodeid``, which pytest 9
    no longer reads (node ids come from ``_id``), so ``xdist_group`` is
    silently ignored there. Group from the node id instead: a check's pair
    items share ``file::check``; any other test is its own scope, as in load.
    """
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ParityGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid):
            if "@" in nodeid:  # xdist's own marking, where it works
                return nodeid.rsplit("@", 1)[-1]
            m = _PAIR_ID.match(nodeid)
            return m.group("check") if m else nodeid

    return ParityGroups(config, log)


def pytest_collect_file(file_path: Path, parent):
    if file_path.name not in ("parity.toml", "pyproject.toml"):
        return None
    if file_path.name == "pyproject.toml" and (file_path.parent / "parity.toml").is_file():
        return None  # parity.toml wins, as in parity.planning.config.load_project
    if file_path.name == "pyproject.toml" and "[tool.parity" not in file_path.read_text(errors="replace"):
        return None
    return ParityFile.from_parent(parent, path=file_path)


class ParityFile(pytest.File):
    def collect(self):
        from parity.planning.config import load_project
        from parity.contracts.errors import ParityError

        try:
            _, checks = load_project(self.path.parent)
        except ParityError as e:
            raise self.CollectError(f"parity: error: {e.one_line()}") from None
        override = self.config.getoption("parity_frameworks")
        for entry in checks:
            if override:
                entry = {**entry, "frameworks": override}
            try:
                pairs = _pairs(entry)
            except ParityError as e:
                raise self.CollectError(f"parity: error: {e.one_line()}") from None
            for pair in pairs:
                item = ParityItem.from_parent(self, name=f"{entry['name']}[{pair[0]}-vs-{pair[1]}]",
                                              entry=entry, pair=pair)
                item.add_marker(pytest.mark.xdist_group(entry["name"]))
                yield item


def _pairs(entry: dict) -> list[tuple[str, str]]:
    from parity.contracts import registry
    from parity.planning.config import default_reference, split_list

    if entry.get("baseline"):
        from parity.baseline import Baseline

        from parity.baseline import baseline_plan

        base = Baseline.open(entry["baseline"])
        chosen, _, _ = baseline_plan(base, split_list(entry.get("frameworks")) or None, entry.get("against"))
        return [("baseline", f) for f in chosen]
    fws = [registry.canonical(f) for f in (split_list(entry.get("frameworks")) or registry.DEFAULT_KEYS)]
    ref = registry.canonical(entry.get("reference") or default_reference(fws))
    pairs = [(ref, f) for f in fws if f != ref]
    if not pairs:  # the same one line `parity check` gives (one framework, or only the reference)
        from parity.planning.config import from_entry
        from parity.contracts.errors import UsageError

        from_entry(entry)
        raise UsageError(f"check {entry.get('name')!r} compares nothing: frameworks {', '.join(fws)} with "
                         f"reference {ref}", "list at least two frameworks, or gate against a baseline")
    return pairs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "check"


def run_entry(config, entry: dict):
    """Results of one declared or marked check, run once per process."""
    key = json.dumps(entry, sort_keys=True, default=str)
    if key in _cache:
        return _cache[key]
    from parity.contracts.errors import ParityError
    from parity.execution.pool import use

    report_root = config.getoption("parity_report_dir")
    report_dir = str(Path(report_root) / _safe(entry["name"])) if report_root else None
    inline = bool(entry.get("inline")) or config.getoption("parity_inline")
    try:
        with use(_session_pool(config, inline)):
            results = _run(entry, report_dir, inline)
    except ParityError as e:
        results = e
    if report_dir and not isinstance(results, Exception):
        _write_reports(Path(report_dir), results.to_dict())
    _cache[key] = results
    return results


def _run(entry: dict, report_dir: str | None, inline: bool):
    if entry.get("baseline"):
        from parity.baseline import Baseline, compare

        base = Baseline.open(entry["baseline"])
        return compare(base, path=entry.get("checkpoint"), frameworks=entry.get("frameworks"),
                       atol=entry.get("atol"), rtol=entry.get("rtol"), tolerances=entry.get("tolerances"),
                       report_dir=report_dir, inline=inline, against=entry.get("against"), envs=entry.get("env"))
    from parity.api import run_check
    from parity.planning.config import from_entry

    return run_check(from_entry(entry, report_dir=report_dir, inline=inline))


def _write_reports(report_dir: Path, data: dict) -> None:
    from parity.report import console, write

    write.write(data, ["html", "md", "junit"], report_dir)
    write.write_text(report_dir / "console.txt", console.render(data, verbose=True) + "\n")


_POOL = pytest.StashKey()


def _session_pool(config, inline: bool):
    """This process's worker pool (parity.execution.pool), made at its first check in worker mode; None without one."""
    if inline or config.getoption("parity_no_pool") or not enabled_by_env():
        return None
    if _POOL not in config.stash:
        mib, idle = config.getoption("parity_pool_max_rss"), config.getoption("parity_pool_max_idle")
        limits = {"max_checks": config.getoption("parity_pool_max_checks") or MAX_CHECKS,
                  "max_rss_bytes": mib << 20 if mib else MAX_RSS_BYTES, "max_idle": MAX_IDLE if idle is None else idle}
        from parity.execution import pool_client

        if os.environ.get(SOCKET_ENV):  # a pool shared already (`parity pool start`, an outer run)
            config.stash[_POOL] = os.environ[SOCKET_ENV]
        elif hasattr(config, "workerinput"):  # an xdist worker: one pool for every worker of the run here
            templates = config.getoption("parity_pool_max_templates")
            config.stash[_POOL] = pool_client.for_run(
                config.workerinput["testrunuid"], os.getppid(),
                max_templates=MAX_TEMPLATES if templates is None else templates, **limits)
        else:
            config.stash[_POOL] = Pool(**limits)
    kept = config.stash[_POOL]
    if isinstance(kept, str):  # a server's socket: this process's connection, made again after a fork or a loss
        from parity.execution.pool_client import client

        return client(kept)
    return kept


def _comparisons(results: dict, pair: tuple) -> list[dict]:
    """The comparisons of ``pair`` (reference, candidate); reference ``"baseline"`` is every recording the
    candidate was judged against (its own, and those of recorded frameworks that cannot run here)."""
    ref, candidate = pair
    return [c for c in results["comparisons"] if c["candidate"] == candidate
            and (c["reference"] == ref or ref == "baseline" and c["reference"].startswith("baseline:"))]


def _comparison(results: dict, pair: tuple) -> dict | None:
    return next(iter(_comparisons(results, pair)), None)


def pair_failure(results: dict, pair: tuple) -> str | None:
    """The pair x output table and first divergence of one failing pair (None when it passes).

    ``pair`` is (reference, candidate); ``"baseline"`` matches a framework's own recording. A pair
    that was not compared fails with the fault of the side that could not run."""
    from parity.report import console

    ref, candidate = pair
    comps = _comparisons(results, pair)
    comp = comps[0] if comps else None
    # --generate / --pipeline (generate = true, pipeline = true): the pair's entries decide too
    behaviour = {part: [e for e in results[part] if e["candidate"] == candidate]
                 for part in ("generation", "pipeline") if results.get(part) is not None}
    if comps and all(c["passed"] for c in comps) and all(e["passed"] for es in behaviour.values() for e in es):
        return None
    ref = comp["reference"] if comp else ref
    one = {**results, **behaviour, "comparisons": comps,
           "frameworks": {k: v for k, v in results["frameworks"].items()
                          if k in (candidate, ref) or ref.endswith(":" + k)}}
    text = console.render(one, verbose=True)
    if comp is None:
        down = next((fw for fw in (ref, candidate) if (results["frameworks"].get(fw) or {}).get("status") != "ok"),
                    candidate)
        fw = results["frameworks"].get(down, {})
        text = f"{ref} vs {candidate}: not compared ({down} {fw.get('status')}: {fw.get('error')})\n" \
            + _stand_in_text(results, ref, candidate, behaviour) + text
    return text


def _stand_in_text(results: dict, ref: str, candidate: str, behaviour: dict) -> str:
    """A pair whose reference did not run still fails; where another framework stood in for the reference
    (api.reference_used), its comparison with the candidate is shown, so a drift is not hidden behind the
    reference's fault. No item of its own: it would be skipped in every healthy run."""
    from parity.report import console

    used = (results.get("reference_used") or {}).get("framework")
    comp = _comparison(results, (used, candidate)) if used and used != ref else None
    if comp is None:
        return ""
    one = {**results, **behaviour, "comparisons": [comp],
           "frameworks": {k: v for k, v in results["frameworks"].items() if k in (used, candidate)}}
    return f"{used} stands in for {ref}:\n" + console.render(one, verbose=True) + "\n\n"


class ParityItem(pytest.Item):
    def __init__(self, *, entry, pair, **kw):
        super().__init__(**kw)
        self.entry, self.pair = entry, pair

    def runtest(self):
        results = run_entry(self.config, self.entry)
        if isinstance(results, Exception):
            _record(self, None, "error", results.one_line())
            raise ParityFailure(f"parity: error: {results.one_line()}")
        data = results.to_dict()
        failure = pair_failure(data, self.pair)
        comp = _comparison(data, self.pair)
        _record(self, data, "pass" if failure is None else "fail", comp and comp["first_divergence"])
        if failure:
            raise ParityFailure(failure)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ParityFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"parity check {self.name}"


class ParityFailure(Exception):
    """A pair failed: the message is the rendered table (no traceback)."""


def _record(item, data: dict | None, verdict: str, detail) -> None:
    root = item.config.getoption("parity_report_dir")
    if not root:
        return
    entries = Path(root) / ENTRIES
    entries.mkdir(parents=True, exist_ok=True)
    check = item.entry["name"] if hasattr(item, "entry") else item.name
    results = Path(root) / _safe(check) / "results.json"
    row = {"nodeid": item.nodeid, "check": check, "pair": "-vs-".join(getattr(item, "pair", ())) or None,
           "verdict": verdict, "first_divergence": detail if verdict == "fail" else None,
           "error": detail if verdict == "error" else None,
           "results": str(results.relative_to(root)) if results.is_file() else None,
           "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "pid": os.getpid(),
           "checkpoint": data["checkpoint"]["path"] if data else None}
    write_atomic(entries / f"{_safe(item.nodeid)}.json", json.dumps(row))
    _rows.append(row)


_rows: list = []  # this process's index entries: an xdist worker sends them to the controller


def pytest_sessionstart(session):
    _rows.clear()
    root = session.config.getoption("parity_report_dir")
    if root and not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(Path(root) / ENTRIES, ignore_errors=True)  # an index lists this run only


def pytest_collection_modifyitems(session, config, items):
    """--parity-shard I/N: keep the items of every I-th group (a check's pairs, or one other test)."""
    shard = config.getoption("parity_shard")
    if not shard:
        return
    index, count = _shard(shard)
    groups = sorted({_group(item) for item in items})
    mine = {g for n, g in enumerate(groups) if n % count == index - 1}
    keep = [item for item in items if _group(item) in mine]
    dropped = [item for item in items if _group(item) not in mine]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def _shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise pytest.UsageError(f"parity: error: --parity-shard {text!r} is not I/N with 1 <= I <= N. "
                                "Note: e.g. --parity-shard 2/4 runs the second of four shards")
    return int(m.group(1)), int(m.group(2))


def _group(item) -> str:
    """A check's pair items share their check's id; any other test is a group of its own."""
    if isinstance(item, ParityItem):
        return f"{item.path}::{item.entry['name']}"
    return item.nodeid


def pytest_sessionfinish(session):
    """On the controller (or without xdist): gather every worker's entries into one index.

    On an xdist worker, local or on another machine: hand this worker's entries and
    results files to the controller (``workeroutput``, see pytest_testnodedown)."""
    config = session.config
    if _POOL in config.stash:  # this process's own pool ends; a shared one ends with its run
        if isinstance(config.stash[_POOL], Pool):
            config.stash[_POOL].close()
        del config.stash[_POOL]
    root = config.getoption("parity_report_dir")
    if hasattr(config, "workerinput"):
        if root:
            config.workeroutput["parity"] = _shipment(Path(root))
        return
    if not root:
        return
    entries = Path(root) / ENTRIES
    rows = sorted((json.loads(p.read_text()) for p in entries.glob("*.json")), key=lambda r: r["nodeid"]) \
        if entries.is_dir() else []
    if not rows:
        return
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("pass", "fail", "error")}
    Path(root, "index.json").write_text(json.dumps({"items": rows, "counts": counts}, indent=2) + "\n")
    lines = ["# parity checks", "", f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors", "",
             "| item | verdict | first divergence / error | results | worker |", "|---|---|---|---|---|"]
    for r in rows:
        link = f"[{r['results']}]({r['results']})" if r["results"] else "-"
        lines.append(f"| `{r['nodeid']}` | {r['verdict'].upper()} | {r['first_divergence'] or r['error'] or ''} "
                     f"| {link} | {r['worker']} |")
    Path(root, "index.md").write_text("\n".join(lines) + "\n")
    _index_html(Path(root), rows)


def _shipment(root: Path) -> dict:
    """This worker's index entries and the results files they name (text, relative to the report folder)."""
    results = {r["results"]: (root / r["results"]).read_text() for r in _rows
               if r["results"] and (root / r["results"]).is_file()}
    return {"entries": list(_rows), "results": results}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Controller: a worker's entries and results, from whichever machine it ran on, into this
    run's report folder; the reports of a results file written here are rendered from it."""
    root = node.config.getoption("parity_report_dir")
    shipped = (getattr(node, "workeroutput", None) or {}).get("parity")
    if not root or not shipped:
        return
    root = Path(root).resolve()
    for rel, text in shipped["results"].items():
        target = (root / rel).resolve()
        if root not in target.parents or target.exists():
            continue  # outside the folder (never written), or the same machine already wrote it
        write_atomic(target, text)
        from parity.contracts.results import Results

        _write_reports(target.parent, Results.load(target).to_dict())
    for row in shipped["entries"]:
        write_atomic(root / ENTRIES / f"{_safe(row['nodeid'])}.json", json.dumps(row))


def _index_html(root: Path, rows: list) -> None:
    """index.html over every check's report.html (one entry per results file, all workers)."""
    from parity.report import index, write
    from parity.contracts.results import Results

    links = []
    for rel in dict.fromkeys(r["results"] for r in rows if r["results"]):
        results = root / rel
        page = results.parent / "report.html"
        links.append((os.path.relpath(page, root) if page.exists() else None, Results.load(results).to_dict()))
    if links:
        write.write_text(root / "index.html", index.render(links))


# --- programmatic use: the marker and the fixture ---------------------------------------------------------


def _marker_entry(item) -> dict | None:
    mark = item.get_closest_marker("parity")
    if mark is None:
        return None
    kw = dict(mark.kwargs)
    if mark.args:
        kw.setdefault("checkpoint", mark.args[0])
    unknown = sorted(set(kw) - MARKER_KEYS)
    if unknown:
        pytest.fail(f"parity: error: unknown key {unknown[0]!r} in @pytest.mark.parity on {item.nodeid}. "
                    f"Note: use only {', '.join(sorted(MARKER_KEYS))}", pytrace=False)
    if "checkpoint" not in kw and "baseline" not in kw:
        pytest.fail(f"parity: error: @pytest.mark.parity on {item.nodeid} has no checkpoint. "
                    "Note: pass checkpoint=<folder or fixture name>", pytrace=False)
    ckpt = kw.get("checkpoint")
    if isinstance(ckpt, str) and ckpt.isidentifier() and not Path(ckpt).exists():
        kw["checkpoint"] = str(item._request.getfixturevalue(ckpt))
    elif ckpt is not None:
        kw["checkpoint"] = str(ckpt)
    kw["name"] = item.name
    return kw


class ParityHelper:
    """The ``parity`` fixture: ``results`` of this test's marker, and ``check()`` for ad-hoc runs."""

    def __init__(self, item):
        self._item = item
        self.results = None

    def check(self, checkpoint, **options):
        """Run a check (cached per process) and return its Results; raises UsageError on bad input."""
        from parity.contracts.errors import ParityError

        entry = {"name": f"{self._item.name}:{Path(str(checkpoint)).name}", "checkpoint": str(checkpoint), **options}
        results = run_entry(self._item.config, entry)
        if isinstance(results, ParityError):
            raise results
        return results

    def assert_passed(self, results=None):
        """Fail the test with the pair tables when any pair failed."""
        results = results or self.results
        data = results.to_dict()
        texts = [t for c in data["comparisons"] if (t := pair_failure(data, (c["reference"], c["candidate"])))]
        bad = [fw for fw, e in data["frameworks"].items() if e["status"] in ("error", "crashed", "unavailable")]
        if texts or bad:
            pytest.fail("\n".join(texts) or f"parity: frameworks failed: {', '.join(bad)}", pytrace=False)


@pytest.fixture
def parity(request):
    helper = ParityHelper(request.node)
    entry = _marker_entry(request.node)
    if entry is not None:
        helper.results = _marked_results(request.node, entry)
    return helper


def _marked_results(item, entry):
    from parity.contracts.errors import ParityError

    results = run_entry(item.config, entry)
    if isinstance(results, ParityError):
        _record(item, None, "error", results.one_line())
        pytest.fail(f"parity: error: {results.one_line()}", pytrace=False)
    item.stash[_RESULTS] = results
    return results


_RESULTS = pytest.StashKey()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A marked test fails when its check does, after its own body ran."""
    entry = _marker_entry(item) if item.get_closest_marker("parity") else None
    if entry is not None and _RESULTS not in item.stash:
        _marked_results(item, entry)
    result = yield
    if entry is not None:
        data = item.stash[_RESULTS].to_dict()
        texts = [t for c in data["comparisons"] if (t := pair_failure(data, (c["reference"], c["candidate"])))]
        bad = [fw for fw, e in data["frameworks"].items() if e["status"] in ("error", "crashed", "unavailable")]
        _record(item, data, "fail" if texts or bad else "pass",
                next((c["first_divergence"] for c in data["comparisons"] if not c["passed"]), None))
        if texts or bad:
            pytest.fail("\n".join(texts) or f"parity: frameworks failed: {', '.join(bad)}", pytrace=False)
    return result
