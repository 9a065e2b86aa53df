# The two set-up commands of the README: `make serve` and `make test`. Each creates .venv and installs
# what it needs on first use; `make setup` does only the install.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_DIR := models/default
EXTRAS := train,serve,loadtest,pcap,parquet,stream,dev

.PHONY: setup model serve test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Train and export the default model when it is missing (about 7 minutes on 2 cores).
model: $(MODEL_DIR)/model.onnx

$(MODEL_DIR)/metadata.json: | $(STAMP)
	$(BIN)/moe-ids train --output $(MODEL_DIR)

$(MODEL_DIR)/model.onnx: $(MODEL_DIR)/metadata.json
	$(BIN)/moe-ids export --model-dir $(MODEL_DIR)

serve: setup
	$(BIN)/moe-ids serve

test: setup model
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: setup model
	$(BIN)/moe-ids bench

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf build results
