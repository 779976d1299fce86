"""parity: one checkpoint in PyTorch, TensorFlow and Flax, compared.

``parity.check(path, ...)`` returns a Results object; see parity.api. The
package imports no framework: runners import theirs inside worker processes.
"""

__version__ = "0.1.0"
__all__ = ["check", "__version__"]


def check(path, **options):
    """See parity.api.check (imported lazily to keep `import parity` fast)."""
    from parity.api import check as _check

    return _check(path, **options)
