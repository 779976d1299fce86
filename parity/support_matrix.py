"""`parity support`: which (model type, task) pairs have classes in which frameworks.

Read from transformers' auto mappings (tasks.py, ast only), so the table
follows the installed transformers and no framework is imported.
"""

from __future__ import annotations

from parity.planning import tasks
from parity.contracts import registry

FRAMEWORKS = registry.KEYS


def matrix(min_frameworks: int = 2) -> dict[str, dict[str, list[str]]]:
    """{model_type: {task: [frameworks with a class]}} for pairs with >= min_frameworks classes."""
    out: dict[str, dict[str, list[str]]] = {}
    for task in tasks.TASKS:
        by_fw = {fw: tasks.mapping(fw, task) for fw in FRAMEWORKS}
        for model_type in sorted(set().union(*by_fw.values())):
            have = [fw for fw in FRAMEWORKS if by_fw[fw].get(model_type)]
            if len(have) >= min_frameworks:
                out.setdefault(model_type, {})[task] = have
    return dict(sorted(out.items()))


def classes(model_type: str, task: str) -> dict[str, str | None]:
    return tasks.classes(model_type, task, FRAMEWORKS)


def _cell(fws) -> str:
    return "/".join(fws) if fws else ""


def render(fmt: str = "text", min_frameworks: int = 2) -> str:
    """The support matrix as an aligned text table or Markdown."""
    from parity.contracts.versions import versions

    table = matrix(min_frameworks)
    used = [t for t in tasks.TASKS if any(t in row for row in table.values())]
    trio = set(registry.DEFAULT_KEYS)  # transformers' own three
    three = sum(1 for row in table.values() if any(trio <= set(f) for f in row.values()))
    title = (f"transformers {versions()['transformers']}: {len(table)} model types with a class in at least "
             f"{min_frameworks} frameworks for some task ({three} with all of {registry.spoken(registry.DEFAULT_KEYS)} for at "
             "least one task; keras-* columns: what KerasHub converts)")
    if fmt == "md":
        lines = [f"{title}.", "", "| model type | " + " | ".join(used) + " |",
                 "|---|" + "---|" * len(used)]
        for mt, row in table.items():
            lines.append(f"| {mt} | " + " | ".join(_cell(row.get(t)) for t in used) + " |")
        return "\n".join(lines)
    width = max(len(mt) for mt in table) if table else 10
    lines = [title, "", f"{'model type':<{width}}  tasks (frameworks with a class)"]
    for mt, row in table.items():
        lines.append(f"{mt:<{width}}  " + ", ".join(f"{t} {_cell(f)}" for t, f in row.items()))
    return "\n".join(lines)
