"""junit.xml: one testsuite per pair, one testcase per output group, for CI test reporters.

Follows the Jenkins/Ant JUnit schema (junit-10.xsd) that GitLab, Jenkins and the
GitHub test-report actions read: testsuites > testsuite > testcase with
failure / error / skipped children. Frameworks that could not load or run
get their own "frameworks" suite, so a crash is an error, not a silent pass.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from parity.report.behaviour import generation_lines, pipeline_lines
from parity.report.common import environments, groups, labels_line, pair_name, source, stand_in, worst_row
from parity.numerics.format import num
from parity.report.console import mismatch_message

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _t(text) -> str:
    """Characters XML 1.0 cannot carry are dropped (checkpoint strings can hold anything)."""
    return _XML_BAD.sub("", str(text))


def _timestamp(results: dict) -> str:
    return (results.get("created") or "1970-01-01T00:00:00")[:19]  # schema: no time zone


def _suite(parent, name: str, results: dict, seconds: float) -> ET.Element:
    return ET.SubElement(parent, "testsuite", {
        "name": _t(name), "tests": "0", "failures": "0", "errors": "0", "skipped": "0",
        "time": f"{seconds:.3f}", "timestamp": _timestamp(results), "hostname": "localhost",
        "package": "parity", "id": "0"})


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attr, str(sum(1 for c in cases if c.find(tag) is not None)))


def _properties(suite: ET.Element, props: dict) -> None:
    el = ET.SubElement(suite, "properties")
    for k, v in props.items():
        ET.SubElement(el, "property", {"name": _t(k), "value": _t(v if v is not None else "")})


def _behaviour(root, results: dict) -> None:
    """--generate / --pipeline: one suite each, one testcase per pair; its summary is the failure message."""
    for part, lines in (("generation", generation_lines(results, verbose=True)),
                        ("pipeline", pipeline_lines(results, verbose=True))):
        if results.get(part) is None:
            continue
        suite = _suite(root, part, results, 0.0)
        for entry in results[part]:
            case = ET.SubElement(suite, "testcase", {"name": _t(f"{entry['reference']} vs {entry['candidate']}"),
                                                     "classname": f"parity.{part}", "time": "0.000"})
            text = entry.get("summary") or entry.get("error") or ""
            if entry.get("skipped"):
                ET.SubElement(case, "skipped", {"message": _t(text)})
            elif not entry["passed"]:
                fail = ET.SubElement(case, "failure", {"message": _t(text), "type": "ParityBehaviour"})
                fail.text = _t("\n".join(lines))
        _count(suite)


def _tokenizers(root, results: dict) -> None:
    """Tokenizer pairs: one suite, one testcase per pair; the differing texts are the failure."""
    from parity.report.loading import tokenizer_lines

    if not results.get("tokenizers"):
        return
    suite = _suite(root, "tokenizers", results, 0.0)
    for entry in results["tokenizers"]:
        name = f"{entry['reference']} vs {entry['candidate']}"
        case = ET.SubElement(suite, "testcase", {"name": _t(name), "classname": "parity.tokenizers", "time": "0.000"})
        if not entry["passed"]:
            lines = tokenizer_lines({"tokenizers": [entry]}, verbose=True)
            kind = "error" if entry.get("error") else "failure"
            fail = ET.SubElement(case, kind, {"message": _t(lines[0]), "type": "ParityTokenizer"})
            fail.text = _t("\n".join(lines))
    _count(suite)


def _frameworks_suite(root, results: dict, props: dict) -> None:
    """One testcase per framework (load and run: error, skipped or its class and device), and an error when no
    pair was compared."""
    fws = results.get("frameworks", {})
    fw_suite = _suite(root, "frameworks", results,
                      sum((f.get("seconds") or {}).get("total", 0.0) for f in fws.values()))
    _properties(fw_suite, props)
    for name, fw in fws.items():
        sec = (fw.get("seconds") or {}).get("total", 0.0)
        case = ET.SubElement(fw_suite, "testcase", {"name": _t(f"{name} load and run"),
                                                   "classname": "parity.frameworks", "time": f"{sec:.3f}"})
        status = fw.get("status")
        if status == "unsupported":
            ET.SubElement(case, "skipped", {"message": _t(fw.get("error") or "unsupported")})
        elif status != "ok":
            err = ET.SubElement(case, "error", {"message": _t(fw.get("error") or status), "type": _t(status)})
            err.text = _t(fw.get("traceback") or fw.get("error") or status)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _t(f"{fw.get('class_name')} on {fw.get('device')}, weights {source(fw)}")
    if results.get("nothing_compared"):
        case = ET.SubElement(fw_suite, "testcase", {"name": "comparisons", "classname": "parity.frameworks",
                                                   "time": "0.000"})
        err = ET.SubElement(case, "error", {"message": _t(results["nothing_compared"]), "type": "NothingCompared"})
        err.text = _t(results["nothing_compared"])
    _count(fw_suite)


def _settings(results: dict) -> dict:
    """Each side's loading settings (dtype, attention), as properties."""
    from parity.report.loading import settings_lines

    out = {}
    for line in settings_lines(results):
        name, _, value = line.partition(": ")
        out[f"settings.{name}"] = value
    return out


def render(results: dict) -> str:
    ck = results["checkpoint"]
    root = ET.Element("testsuites", {"name": _t(f"parity {ck.get('path')}")})
    props = {"checkpoint": ck.get("path"), "model_type": ck.get("model_type"), "task": results.get("task"),
             "fingerprint": ck.get("fingerprint"), "exit_code": results.get("exit_code"),
             "labels": labels_line(ck)}
    if stand_in(results):
        props["reference_used"] = stand_in(results)
    for i, line in enumerate(environments(results)):
        props[f"environment.{i}"] = line
    props.update(_settings(results))
    fws = results.get("frameworks", {})

    _frameworks_suite(root, results, props)

    for comp in results.get("comparisons", []):
        pair = pair_name(comp)
        cand = fws.get(comp["candidate"], {}).get("seconds", {}) or {}
        suite = _suite(root, f"{pair} ({ck.get('path')})", results, cand.get("total", 0.0))
        _properties(suite, {**props, "reference": comp["reference"], "candidate": comp["candidate"],
                            "first_divergence": comp.get("first_divergence")})
        classname = "parity." + _t(pair.replace(" ", "_"))
        for group, rows in groups(comp["outputs"]).items():
            case = ET.SubElement(suite, "testcase", {"name": _t(group), "classname": classname, "time": "0.000"})
            failing = [r for r in rows if not r["passed"]]
            if not failing:
                continue
            worst = worst_row(failing) or failing[0]
            msg = (f"{len(failing)}/{len(rows)} {group} outputs out of tolerance; worst {worst['name']}: "
                   f"max abs diff {num(worst.get('max_abs_diff'))} (atol {worst['atol']:g}, rtol {worst['rtol']:g})"
                   f"; first divergence {comp.get('first_divergence')}")
            fail = ET.SubElement(case, "failure", {"message": _t(msg), "type": "ParityMismatch"})
            fail.text = _t("\n".join(f"{r['name']}: {mismatch_message(r)}" for r in failing))
        _count(suite)

    _behaviour(root, results)
    _tokenizers(root, results)
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr)) for s in root.findall("testsuite"))))
    root.set("time", f"{(results.get('seconds') or {}).get('total', 0.0):.3f}")
    for i, s in enumerate(root.findall("testsuite")):
        s.set("id", str(i))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
