# Set-up and the main jobs. Every target creates its own virtualenv (.venv) from scratch
# when it is missing, so `make main` and `make test` work on a fresh clone.
PYTHON   ?= python3
VENV     ?= .venv
# On the dev/CI machines torch==2.13.0 resolves to a local CPU build; elsewhere pick
# the build you need, e.g. `make test TORCH=torch`.
TORCH    ?= torch==2.13.0
DATA_DIR ?= ../shared/data
DEVICE   ?= auto
RUNS     ?= runs
# pytest-xdist workers for `make test`: one per logical core (2 on CI); TEST_WORKERS=0
# runs the suite in one process.
TEST_WORKERS ?= logical
BIN      := $(VENV)/bin
CKPT     := $(DATA_DIR)/reference-checkpoints

.PHONY: install main test test-fast lint chromium demo figures reproduce dry-run lab fixtures clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,notebooks]"
	$(BIN)/python -m ipykernel install --sys-prefix --name kdlib --display-name "kdlib (.venv)"
	touch $@

install: $(BIN)/.installed

# The main job: render every figure of the study from the recorded runs, then evaluate
# the paper's teacher and train a short KD run on whatever device exists.
main: figures demo

lint: install
	$(BIN)/ruff check kdlib tests notebooks

test: lint chromium
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=20

# The browser test drives Debian's Chromium (tests/test_browser.py): installed with apt-get
# where it is missing and we are root (CI). Where it cannot be, this says why and goes on,
# and the browser test skips with the reason.
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "chromium: $(CHROMIUM) missing and not root: the browser test will skip"; \
	elif ! command -v apt-get >/dev/null; then \
		echo "chromium: $(CHROMIUM) missing and no apt-get: the browser test will skip"; \
	else \
		echo "chromium: installing Debian's chromium with apt-get"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium >/dev/null; } \
		|| echo "chromium: apt-get failed: the browser test will skip"; \
	fi

# The quick tier while working: everything but the tests marked slow (end-to-end runs,
# kill tests, notebooks, JupyterLab and the browser, the real data). CI runs the whole
# `make test`.
test-fast: lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow"

# The seed paper's ResNet26 teacher on the lossless test split, then a short KD run of a
# ResNet8 student from it.
demo: install
	$(BIN)/kdlib data prepare --dataset cifar10 --data-dir $(DATA_DIR)
	$(BIN)/kdlib eval --model resnet26 --checkpoint $(CKPT)/resnet26_cifar10.pth \
		--dataset cifar10 --data-dir $(DATA_DIR) --device $(DEVICE)
	$(BIN)/kdlib train --method kd --student resnet8 --teacher resnet26 \
		--teacher-checkpoint $(CKPT)/resnet26_cifar10.pth --dataset cifar10 \
		--epochs 2 --train-limit 10000 --data-dir $(DATA_DIR) --device $(DEVICE) \
		--runs-dir $(VENV)/demo-runs

# Every figure notebook, executed with papermill against $(RUNS), into figures/.
figures: install
	$(BIN)/python -m kdlib.notebooks --runs-dir $(RUNS) --figures-dir figures \
		--notebooks-dir notebooks

# The paper's sweeps (a GPU machine: several runs packed on it), then the figures.
reproduce: install
	for s in paper_table3 paper_table4 paper_table2; do \
		$(BIN)/kdlib sweep sweeps/$$s.yaml --parallel 4 --set data_dir=$(DATA_DIR) || exit 1; \
	done
	$(MAKE) figures

# Every shipped sweep, one seed, 1 epoch on a data subset, on the CPU: checks that all of
# it runs end to end before GPU time is spent (runs go to .venv/dry-runs, not runs/).
DRY := --set seed=0 --set epochs=1 --set train_limit=256 --set val_size=256 \
	--set test_limit=500 --set device=cpu --set runs_dir=$(VENV)/dry-runs \
	--set data_dir=$(DATA_DIR)
dry-run: install
	for s in paper_table3 paper_table4 paper_table2 kdparam cpu_short; do \
		$(BIN)/kdlib sweep sweeps/$$s.yaml $(DRY) --quiet || exit 1; \
	done
	$(BIN)/kdlib sweep sweeps/generalization.yaml $(DRY) --set dataset=cifar10 --quiet

# JupyterLab on the notebooks (root, as in containers, needs --allow-root).
lab: install
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

fixtures: install
	$(BIN)/python -m tests.make_fixture_runs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
