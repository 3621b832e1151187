# The two commands of the quick start: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint chat

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	CHAT_API_DEMO=1 $(VENV)/bin/merchant-assist serve --host $(HOST) --port $(PORT)

chat: $(STAMP)
	$(VENV)/bin/merchant-assist chat

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tests alone: no system suites, storage on SQLite and the in-process store only, one process per core.
test-fast: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/system --embedded -n auto -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
