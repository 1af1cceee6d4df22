# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Creates a datastore from the sample folder on the embedded default store (no server needed:
# the first create starts the local Prefect server), lists it, shows its details, and says where
# the Prefect UI with its flow run is ('datastore server stop' ends the local server).
demo: install
	$(BIN)/datastore create examples/sample
	$(BIN)/datastore list
	$(BIN)/datastore show sample
	$(BIN)/datastore server status

# Two pytest workers, one test file each at a time (a file's module fixtures, e.g. the deployed
# Prefect server, are set up once): the suite is CPU-bound on 2 cores, more workers only add load.
TEST_WORKERS ?= 2

test: install
	$(BIN)/lint-imports && $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Unit tests only (no server, no subprocess): the quick loop while editing.
test-fast: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m 'not integration' $(PYTEST_ARGS)

# BENCH_ARGS, e.g. "--only lazy-mount --mount-files-big 1000000" (the README run of the FUSE
# mount against rclone mount and s3fs: needs root, /dev/fuse, fusermount3, rclone and s3fs).
# The FUSE binding measurement is separate: $(BIN)/python -m bench.fuse_bindings (see its --help).
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-awscli .pytest_cache
