"""Render the chosen formats from one results dict and write them; shared by `check` and `report`."""

from __future__ import annotations

import os
from pathlib import Path

from parity.contracts.atomic import write_atomic
from parity.contracts.errors import UsageError

FORMATS = ("console", "json", "md", "html", "junit")
FILES = {"json": "results.json", "md": "report.md", "html": "report.html", "junit": "junit.xml"}
DEFAULT = "console,json,html"


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in str(text).split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise UsageError(f"unknown report format {bad[0]!r}" if bad else "--format is empty",
                         f"--format takes a comma list of {', '.join(FORMATS)}")
    return list(dict.fromkeys(wanted))


def render(results: dict, fmt: str, *, verbose: bool = False) -> str:
    if fmt == "console":
        from parity.report import console
        return console.render(results, verbose=verbose)
    if fmt == "json":
        import json
        return json.dumps(results, indent=2, allow_nan=False) + "\n"
    if fmt == "md":
        from parity.report import markdown
        return markdown.render(results)
    if fmt == "html":
        from parity.report import html
        return html.render(results)
    from parity.report import junit
    return junit.render(results)


def check_writable(folders, option: str = "--out (or --report-dir)") -> None:
    """Fail before the first file is written, so a bad --out leaves nothing half-written."""
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".parity-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise UsageError(f"report folder {folder} cannot be written ({e.strerror})",
                             f"pass {option} with a writable folder") from None


def write_text(path: Path, text: str) -> Path:
    """Atomic (temp file + rename): a reader never sees half a report."""
    return write_atomic(path, text)


def render_files(results: dict, formats, out_dir) -> dict[Path, str]:
    """Every file format rendered first (nothing is written if one fails), keyed by target path."""
    return {Path(out_dir) / FILES[f]: render(results, f) for f in formats if f in FILES}


def write(results: dict, formats, out_dir) -> list[Path]:
    files = render_files(results, formats, out_dir)
    check_writable(p.parent for p in files)
    return [write_text(path, text) for path, text in files.items()]
