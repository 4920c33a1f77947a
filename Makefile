PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= demo/data
DEMO_RUN ?= demo/run

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project metadata changes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hardmine demo-data $(DEMO_DATA) --seed 0 --size 128 --overwrite
	$(BIN)/hardmine check-data $(DEMO_DATA)
	$(BIN)/hardmine round --data $(DEMO_DATA) --out $(DEMO_RUN) --n 3 --model efficientnet_lite0 --weights imagenet \
		--frozen --image-size 128 --overwrite
	@echo "Results are in $(DEMO_RUN)/ (report.json, report.html, round-*/mined.csv)"

lint: $(STAMP)
	$(BIN)/ruff check hardmine tests examples benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest

clean:
	rm -rf demo .pytest_cache .ruff_cache
