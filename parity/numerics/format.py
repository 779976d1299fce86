"""How numbers are written, in the --explain narrative and in every report (parity.report)."""

SHORT = ".1e"  # two significant digits: console tables and the --explain narrative


def num(x, fmt: str = ".2e") -> str:
    """The one number formatter of the reports and the --explain narrative: "-" for a missing value."""
    return "-" if x is None else format(x, fmt)
