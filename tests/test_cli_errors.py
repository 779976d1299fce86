"""CLI error plumbing. The bad inputs themselves (exit 2, one line with a Note, nothing
written) are the corpus: tests/corpus/make_corpus.py, run by tests/test_corpus.py."""


def test_debug_shows_the_traceback(cli, tmp_path):
    r = cli("--debug", "check", tmp_path / "nope", report=False)
    assert r.code != 0 and "Traceback" in r.err


def test_no_command_prints_help(cli):
    r = cli(report=False)
    assert r.code == 2 and "check" in r.out
