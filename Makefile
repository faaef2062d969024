# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo docs test bench-quality bench-score bench-ngram bench-train bench-throughput bench-poll-overlap bench-scale-out bench-detection bench-cli-start bench-batch-rounding clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# setuptools warns that an editable install sees a folder named like the package: that is the point of it.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m monitor demo

# The README's worked example: its output, the figures beside it and docs/images/error-distributions.png.
docs: $(STAMP)
	$(BIN)/python docs/worked_example.py

test: $(STAMP)
	deploy/local/install-system-deps.sh
	$(BIN)/python -m pytest

bench-quality: $(STAMP)
	$(BIN)/python bench/quality.py

bench-score: $(STAMP)
	$(BIN)/python bench/score.py

bench-ngram: $(STAMP)
	$(BIN)/python bench/ngram.py

bench-train: $(STAMP)
	$(BIN)/python bench/train.py

bench-throughput: $(STAMP)
	deploy/local/install-system-deps.sh
	$(BIN)/python bench/throughput.py

bench-poll-overlap: $(STAMP)
	deploy/local/install-system-deps.sh
	$(BIN)/python bench/poll_overlap.py

bench-scale-out: $(STAMP)
	$(BIN)/python bench/scale_out.py

bench-detection: $(STAMP)
	$(BIN)/python bench/detection.py

bench-cli-start: $(STAMP)
	$(BIN)/python bench/cli_start.py

bench-batch-rounding: $(STAMP)
	$(BIN)/python bench/batch_rounding.py

clean:
	rm -rf $(VENV) *.egg-info
