# Everything a fresh machine needs goes through these targets: they create .venv and install what is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/aiomesos/v1/*.proto) $(wildcard proto/aiomesos/etcd/v3/*.proto)

.PHONY: run test test-fast lint typecheck proto proto-check bench bench-large clean cluster system-deps

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "python3 is required"; exit 2; }
	@$(PY) -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	@# procps (ps/pgrep) is used by the tests' leak checks.
	@command -v ps >/dev/null || { apt-get update -qq && apt-get install -y -qq procps; }
	@# Debian's etcd-server: the tests start their own etcd (scheduler_sdk/local_etcd.py) for the HA masters.
	@test -x /usr/bin/etcd || { apt-get update -qq && apt-get install -y -qq etcd-server; }
	@# nftables: deploy/netns-cluster.sh partitions a namespace host with an nft table (tests/e2e/test_netns.py).
	@command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq nftables; }
	@# Debian's chromium and its driver: the web UI's tests (tests/e2e/test_webui.py) and bench.webui drive it headless.
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

run: $(STAMP)
	$(BIN)/aiomesos demo

cluster: $(STAMP)
	$(BIN)/aiomesos cluster up

# Three pytest-xdist workers on two cores: most of the time is spent waiting on daemons (2,187 tests: 531 s on two
# workers, 482 s on three, both on a loaded 2-core VM); --dist loadfile keeps a module in one worker, so its
# module-scoped fixtures (one cluster per module) are made once. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 3

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy scheduler_sdk mesos_master mesos_agent

proto: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)

bench: $(STAMP)
	$(BIN)/python -m bench.all

# The cluster-scale runs of issue 14 (50,000 simulated agents, a day of a 1,000-host trace): 30-40 minutes.
bench-large: $(STAMP)
	$(BIN)/python -m bench.all --large

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
