"""Compare two frameworks' pipeline outputs (``--pipeline``), input by input.

What a service would return must match: the label (each flip is listed with
the reference's score margin between the two labels), entity spans, answers,
fill-mask top-k tokens, generated text; scores within tolerance.
"""

from __future__ import annotations


def _close(a, b, tol: tuple) -> bool:
    return a is not None and b is not None and abs(a - b) <= tol[0] + tol[1] * abs(b)


def _classification(ref, cand, tol):
    """All labels with their scores: the top label, and every label's score."""
    r, c = {d["label"]: d["score"] for d in ref}, {d["label"]: d["score"] for d in cand}
    top_r, top_c = max(r, key=r.get), max(c, key=c.get)
    ok_scores = set(r) == set(c) and all(_close(c[k], r[k], tol) for k in r)
    item = {"label": [top_r, top_c], "score": [r[top_r], c[top_c]], "agrees": top_r == top_c,
            "scores_within": ok_scores}
    if top_r != top_c:
        item["flip"] = {"margin": r[top_r] - r.get(top_c, 0.0), "candidate_margin": c[top_c] - c.get(top_r, 0.0)}
    return item


def _tokens(ref, cand, tol):
    """Token classification: spans (word, start, end) and their labels, scores."""
    span = lambda e: (e.get("word"), e.get("start"), e.get("end"))  # noqa: E731
    r, c = {span(e): e for e in ref}, {span(e): e for e in cand}
    label = lambda e: e.get("entity") or e.get("entity_group")  # noqa: E731
    flips = [{"span": list(s), "label": [label(r[s]), label(c[s])], "scores": [r[s]["score"], c[s]["score"]]}
             for s in r if s in c and label(r[s]) != label(c[s])]
    same = [s for s in r if s in c and label(r[s]) == label(c[s])]
    return {"spans_equal": set(r) == set(c), "agrees": set(r) == set(c) and not flips, "flips": flips,
            "agreeing": len(same), "total": max(len(r), len(c)),
            "scores_within": all(_close(c[s]["score"], r[s]["score"], tol) for s in same)}


def _answer(ref, cand, tol):
    key = lambda a: (a["answer"], a["start"], a["end"])  # noqa: E731
    return {"answer": [ref["answer"], cand["answer"]], "score": [ref["score"], cand["score"]],
            "agrees": key(ref) == key(cand),
            "scores_within": _close(cand["score"], ref["score"], tol)}


def _fill(ref, cand, tol):
    tr, tc = [d["token_str"] for d in ref], [d["token_str"] for d in cand]
    return {"top_k": [tr, tc], "agrees": tr == tc,
            "scores_within": tr == tc and all(_close(b["score"], a["score"], tol) for a, b in zip(ref, cand))}


def _text(ref, cand, tol):
    one = lambda x: (x[0] if isinstance(x, list) else x)["generated_text"]  # noqa: E731
    return {"text": [one(ref), one(cand)], "agrees": one(ref) == one(cand), "scores_within": True}


_ITEM = {"text-classification": _classification, "token-classification": _tokens, "question-answering": _answer,
         "fill-mask": _fill, "text-generation": _text, "text2text-generation": _text}


def compare(ref: str, cand: str, ref_part: dict | None, cand_part: dict | None, *, tolerance: tuple) -> dict:
    """results.json's ``pipeline[]`` entry for one pair."""
    entry = {"reference": ref, "candidate": cand, "passed": False}
    parts = {ref: ref_part or {}, cand: cand_part or {}}
    skipped = [f"{fw}: {p['skipped']}" for fw, p in parts.items() if p.get("skipped")]
    if skipped:
        entry.update(passed=True, skipped="; ".join(skipped), summary="skipped: " + "; ".join(skipped))
        return entry
    errors = [f"{fw} pipeline failed: {p.get('error') or 'no output'}" for fw, p in parts.items()
              if p.get("error") or "outputs" not in p]
    if errors:
        # Both sides failing is the check's error (exit 3: neither produced anything to compare), one side
        # failing where the other ran is what the model does differently (a mismatch).
        entry.update(error="; ".join(errors), summary="; ".join(errors), failed_everywhere=len(errors) == len(parts))
        return entry
    task = ref_part["task"]
    items = [dict(_ITEM[task](a, b, tolerance), input=i)
             for i, a, b in zip(ref_part["inputs"], ref_part["outputs"], cand_part["outputs"])]
    flips = [dict(it["flip"], index=n, label=it["label"]) for n, it in enumerate(items) if "flip" in it]
    flips += [dict(f, index=n) for n, it in enumerate(items) for f in it.get("flips", [])]
    agree = sum(it["agrees"] for it in items) / len(items) if items else None
    entry.update(task=task, passed=bool(items) and all(it["agrees"] and it["scores_within"] for it in items),
                 label_agreement=agree, flips=flips, items=items, max_length=ref_part.get("max_length"),
                 truncated=ref_part.get("truncated"))
    entry["summary"] = summary(entry)
    return entry


def summary(entry: dict) -> str:
    if entry.get("skipped") or entry.get("error"):
        return entry.get("summary") or entry.get("error")
    items = entry["items"]
    agree = sum(it["agrees"] for it in items)
    text = f"{entry['task']}: {agree} of {len(items)} inputs agree"
    if entry["flips"]:
        f = entry["flips"][0]
        margin = f" (reference margin {f['margin']:.3g})" if "margin" in f else ""
        text += f"; {len(entry['flips'])} flip(s), first input {f['index']}: {f['label'][0]} -> {f['label'][1]}{margin}"
    off = sum(not it["scores_within"] for it in items)
    if off:
        text += f"; scores outside tolerance on {off} input(s)"
    if entry.get("truncated"):
        text += f"; {entry['truncated']} input(s) cut to {entry['max_length']} tokens, as the batch"
    return text
