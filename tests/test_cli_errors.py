"""CLI error plumbing. The bad inputs themselves (exit 2, one line with a Note, nothing
written) are the corpus: tests/corpus/make_corpus.py, run by tests/test_corpus.py."""


def test_debug_shows_the_traceback(cli, tmp_path):
    r = cli("--debug", "check", tmp_path / "nope", report=False)
    assert r.code != 0 and "Traceback" in r.err


def test_no_command_prints_help(cli):
    r = cli(report=False)
    assert r.code == 2 and "check" in r.out



def test_cli_fixture_forked_from_the_zygote_acts_as_a_new_interpreter(cli, cli_zygote, tmp_path):
    """The ``cli`` fixture's fork server (tests/cli_zygote.py) must not change what a command does: the same
    exit code, output and files as ``python -m parity`` in a new interpreter, in the command's own folder
    and environment."""
    import os
    import subprocess
    import sys

    assert cli_zygote is not None or os.environ.get("PARITY_TEST_ZYGOTE") == "0"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_text("{")  # found only from the command's own folder
    args = ["check", "sub", "--report-dir", "out", "--timeout", "x"]
    # variables a framework sets in this process once imported (torch: TORCHINDUCTOR_CACHE_DIR) are read by
    # workers, not by what the zygote imported: still forked
    extra = {"PARITY_CACHE_DIR": "elsewhere", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    for bad in (args, args[:-2]):
        forked = cli(*bad, env=extra)
        assert forked.forked == (cli_zygote is not None)
        new = subprocess.run([sys.executable, "-m", "parity", *bad], cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, **extra})
        assert (forked.code, forked.out, forked.err) == (new.returncode, new.stdout, new.stderr)
        assert forked.code == 2 and forked.err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert "config.json" in forked.err
    assert cli("--debug", "check", "sub").err.count("Traceback") == 1  # stderr is the child's own
