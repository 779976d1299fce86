"""Tokenizer parity, the parent's part: compare what two sides' own tokenizers made of the check's texts
(parity.worker.tokenize), before any forward output is read: ids, attention masks, special tokens, padding
side. A differing id names the text, both id lists, both token strings and the first differing position, and
where a known cause explains it (the ``legacy`` flag, ``add_prefix_space``, accents / normalisation, padding
side, added-token spacing), says so."""

from __future__ import annotations

import unicodedata


def _first(a: list, b: list) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def cause(text: str, ref: dict, cand: dict, a: dict, b: dict, pos: int) -> str | None:
    """A known reason for one differing text, read from the two sides' options and tokens."""
    unk = [t for t in b["tokens"] + a["tokens"] if t in ("[UNK]", "<unk>")]
    if unk and any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", text)):
        return ("accents: one side keeps accented letters that the other maps to an unknown token (strip_accents "
                "not applied by its converter)")
    if unicodedata.normalize("NFKC", text) != text or any(unicodedata.category(c) == "Cf" for c in text):
        return "Unicode normalisation: NFKC symbols or zero-width / soft-hyphen characters split differently"
    ro, co = ref.get("options") or {}, cand.get("options") or {}
    for key in ("legacy", "add_prefix_space", "strip_accents"):
        if ro.get(key) != co.get(key):
            return f"the {key} flag differs ({ro.get(key)!r} vs {co.get(key)!r})"
    near = a["tokens"][max(pos - 1, 0):pos + 1] + b["tokens"][max(pos - 1, 0):pos + 1]
    if text[:1].isspace() or any(t in (ref.get("special") or {}).values() for t in near):
        return ("the space before the text or after a special token: sentencepiece's legacy prefix "
                "handling (`legacy`) differs between the two libraries' versions")
    return None


def compare(ref: str, cand: str, ref_info: dict | None, cand_info: dict | None, texts: list,
            report_only: bool) -> dict:
    """results.json's ``tokenizers[]`` entry for one pair."""
    entry = {"reference": ref, "candidate": cand, "passed": False, "compared": 0, "report_only": report_only,
             "texts": [], "issues": []}
    failed = [(fw, (i or {}).get("error") or "no tokenizer report") for fw, i in ((ref, ref_info), (cand, cand_info))
              if not i or i.get("error")]
    if failed:
        entry["error"] = "; ".join(f"{fw} tokenizer could not load: {why}" for fw, why in failed)
        return entry
    for text, a, b in zip(texts, ref_info["texts"], cand_info["texts"]):
        if a["ids"] != b["ids"] or a["mask"] != b["mask"]:
            pos = _first(a["ids"], b["ids"])
            entry["texts"].append({"text": text, "ids": [a["ids"], b["ids"]], "tokens": [a["tokens"], b["tokens"]],
                                   "first_difference": pos,
                                   "cause": cause(text, ref_info, cand_info, a, b, pos)})
    entry["compared"] = len(ref_info["texts"])
    if ref_info.get("padding_side") != cand_info.get("padding_side"):
        entry["issues"].append(f"padding side differs: {ref} {ref_info.get('padding_side')}, "
                               f"{cand} {cand_info.get('padding_side')}")
    rs, cs = ref_info.get("special") or {}, cand_info.get("special") or {}
    for key in sorted(set(rs) & set(cs)):
        if rs[key] != cs[key]:
            entry["issues"].append(f"special token {key} differs: {rs[key]!r} vs {cs[key]!r}")
    differs = bool(entry["texts"] or entry["issues"])
    entry["passed"] = report_only or not differs
    return entry
