"""How each side loaded and tokenized, for every report: each framework's effective dtype and attention
(``frameworks.<key>.settings``), where two sides of a pair loaded differently, the reduced-precision gate's
verdicts (parity.numerics.precision) and the tokenizer pairs (``tokenizers``). Plain lines; each report
shows them in its own way (a section of its own, kept apart from the summary)."""

from __future__ import annotations

from parity.report.common import pair_name


def _settings(fw: dict) -> str:
    s = fw.get("settings") or {}
    parts = [f"dtype {s['dtype']}" if s.get("dtype") else None,
             f"attention {s['attn_implementation']}" if s.get("attn_implementation") else None]
    return ", ".join(p for p in parts if p)


def settings_lines(results: dict) -> list[str]:
    """One line per framework that recorded its settings: ``pt@v5:auto: dtype bfloat16, attention sdpa``."""
    return [f"{name}: {_settings(fw)}" for name, fw in results.get("frameworks", {}).items() if _settings(fw)]


def differences(results: dict) -> list[str]:
    """Pairs whose sides loaded with another dtype or attention implementation: a cause of drift by itself."""
    fws, out = results.get("frameworks", {}), []
    for comp in results.get("comparisons", []):
        ref, cand = fws.get(comp["reference"]) or {}, fws.get(comp["candidate"]) or {}
        a, b = ref.get("settings") or {}, cand.get("settings") or {}
        for key, what in (("dtype", "dtype"), ("attn_implementation", "attention implementation")):
            if a.get(key) and b.get(key) and a[key] != b[key]:
                out.append(f"{pair_name(comp)}: {what} differs ({comp['reference']} {a[key]}, "
                           f"{comp['candidate']} {b[key]})")
    return out


def precision_lines(results: dict) -> list[str]:
    """Pairs judged by the reduced-precision gate: the dtype, its tolerances and how many outputs pass."""
    out = []
    for comp in results.get("comparisons", []):
        rows = [r for r in comp["outputs"] if (r.get("gate") or {}).get("kind") == "statistical"]
        if not rows:
            continue
        g = rows[0]["gate"]
        ok = sum(r["passed"] for r in rows)
        elem = sum(bool(r["gate"].get("elementwise_passed")) for r in rows)
        out.append(f"{pair_name(comp)}: judged in {g['dtype']} (torch.testing's rtol {rows[0]['rtol']:g}, atol "
                   f"{rows[0]['atol']:g}; statistical gate mean |diff| <= atol + rtol * mean |ref|): {ok}/{len(rows)} "
                   f"outputs pass ({elem}/{len(rows)} element-wise)")
        for r in rows:
            if not r["passed"] and "mean" in r["gate"]:
                flips = r["gate"].get("top1_flips")
                out.append(f"  {r['name']}: mean |diff| {r['gate']['mean']:.3g} > {r['gate']['bound']:.3g}"
                           if r["gate"]["mean"] > r["gate"]["bound"] else
                           f"  {r['name']}: {flips} decided top-1 flip(s)")
    return out


def tokenizer_lines(results: dict, verbose: bool = False) -> list[str]:
    """Each tokenizer pair: its verdict, then per differing text the text, where the ids part and why."""
    out = []
    for t in results.get("tokenizers") or []:
        name = f"{t['reference']} vs {t['candidate']}"
        if t.get("error"):
            out.append(f"{name}: ERROR {t['error']}")
            continue
        diffs = t.get("texts") or []
        out.append(f"{name}: {'PASS' if t['passed'] else 'FAIL'} ({len(diffs)} of {t.get('compared', 0)} texts "
                   f"tokenize differently{'; reported only' if t.get('report_only') else ''})")
        for issue in t.get("issues") or []:
            out.append(f"  {issue}")
        for d in diffs[: None if verbose else 5]:
            out.append(f"  text {d['text']!r}: first differs at position {d['first_difference']}: "
                       f"{t['reference']} {d['tokens'][0][:12]} vs {t['candidate']} {d['tokens'][1][:12]}")
            out.append(f"    ids {d['ids'][0][:16]} vs {d['ids'][1][:16]}")
            if d.get("cause"):
                out.append(f"    likely cause: {d['cause']}")
    return out


def sections(results: dict, verbose: bool = False) -> list[tuple[str, list[str]]]:
    """(title, lines) for each part that has something to say."""
    parts = [("loading", settings_lines(results) + differences(results)),
             ("reduced precision", precision_lines(results)),
             ("tokenizers", tokenizer_lines(results, verbose))]
    return [(title, lines) for title, lines in parts if lines]
