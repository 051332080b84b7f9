# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO ?= demo

.PHONY: install demo test lint benchmark clean

# (Re)install when the venv is missing or the dependencies changed.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The main job. For now: a generated catalogue, then the HOG baseline end to end
# (features -> closed-set k-NN -> open-set retrieval -> few-shot table).
demo: $(STAMP)
	$(BIN)/python -m visnet.data.catalogue --out $(DEMO)/catalogue
	$(BIN)/python -m visnet.evaluate --embedder hog --data $(DEMO)/catalogue \
		--classifiers prototype,1nn,mlp --out $(DEMO)/hog-results.json

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# The README's results (needs ../shared/data/fashion-products).
benchmark: $(STAMP)
	$(BIN)/python benchmarks/baseline_quality.py --data ../shared/data/fashion-products --embedder hog --runs 3
	$(BIN)/python benchmarks/baseline_quality.py --data ../shared/data/fashion-products --embedder pixels --runs 3
	$(BIN)/python benchmarks/hog_grey_source.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/update_readme.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache build *.egg-info
