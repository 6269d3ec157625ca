# One entry point for development and CI (.ci/run calls `make test`).
#
# .venv       Python 3.12: builds the wheel and runs everything (the worker side needs 3.12).
# .venv-host  Python 3.11: the host side, as in OpenAvatarChat; runs the test suite against the same wheel.
# Both install the wheel that `make wheel` built, so the tests exercise the product, not a source tree.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY312 ?= python3.12
PY311 ?= python3.11
VENV := .venv
HOST_VENV := .venv-host
# An OpenAvatarChat checkout for the end-to-end run (upstream files, see its PROVENANCE.md); a user's own works too.
OAC_DIR ?= $(CURDIR)/../shared/third_party/openavatarchat
# OAC's environment is 1.4 GB: kept outside the checkout, keyed by OAC's pins and our replacements, so a machine that
# keeps its home between runs builds it once.
OAC_KEY := $(shell cat e2e/openavatarchat/requirements.py $(OAC_DIR)/pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
OAC_VENV ?= $(HOME)/.cache/novabridge/venv-oac-$(OAC_KEY)
CARGO_LOOM_DIR := target/loom
# The Python tools' exact versions (make lock writes them): every install into .venv and .venv-host keeps to them, so
# CI installs what was tested.
LOCK_312 := requirements/py312.txt
LOCK_311 := requirements/py311.txt
# What the lint and test targets build first: the release wheel (install), or `make BUILD=dev ...` for the quicker
# development build.
BUILD ?= install

# Tests launch processes on both interpreters and install the wheel into fresh environments of both.
export NOVABRIDGE_PY312 := $(CURDIR)/$(VENV)/bin/python
export NOVABRIDGE_PY311 := $(CURDIR)/$(HOST_VENV)/bin/python

.PHONY: all docs help dev lock relock demo venvs wheel sdist install lint lint-rust lint-python stubtest test test-rust test-loom test-python \
	peer-venvs peer-venv-build test-peers oac-venv oac-venv-build oac-env chromium oac-e2e soak soak-short bench bench-report bench-bridge \
	wheel-aarch64 check-aarch64 format clean

all: test

## The targets and what each does.
help:
	@awk '/^## /{doc = doc substr($$0, 4) " "; next} \
		/^[a-z][a-z0-9-]*:/{ \
			if (doc != "") { \
				split($$0, t, ":"); n = split(doc, w, " "); line = sprintf("  %-14s", t[1]); width = 16; \
				for (i = 1; i <= n; i++) { \
					if (width + length(w[i]) > 116) { print line; line = sprintf("%16s", ""); width = 16 } \
					line = line " " w[i]; width += length(w[i]) + 1 \
				} \
				print line \
			} \
			doc = ""; next \
		} \
		{doc = ""}' $(firstword $(MAKEFILE_LIST))

$(VENV)/.created:
	$(PY312) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c $(LOCK_312) maturin ziglang auditwheel
	touch $@

$(HOST_VENV)/.created:
	$(PY311) -m venv $(HOST_VENV)
	$(HOST_VENV)/bin/python -m pip install -q --upgrade pip
	touch $@

## The two environments, empty: .venv (Python 3.12, the worker's side) and .venv-host (3.11, the host's).
venvs: $(VENV)/.created $(HOST_VENV)/.created

## One abi3 wheel (cp311-abi3) that serves the 3.11 host and the 3.12 worker on any x86_64 Linux with glibc 2.26 or
## newer (Amazon Linux 2, Ubuntu 18.04, Debian 10 and later): linked by zig against glibc 2.26, checked by auditwheel.
wheel: $(VENV)/.created
	rm -rf dist
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/maturin build --release --quiet --zig --compatibility manylinux_2_26 \
		--out dist
	$(VENV)/bin/auditwheel show dist/*.whl | tr '\n' ' ' | grep '"manylinux_2_26_x86_64"' > /dev/null
	ls dist/*.whl

## The aarch64 (Graviton) wheel into dist-aarch64/, cross-built: Debian's rustc-web with its arm64 standard library
## (apt, as rustup cannot download here), linked by zig against glibc 2.26 like the x86_64 wheel.
wheel-aarch64: $(VENV)/.created
	test -d /usr/lib/rustlib/aarch64-unknown-linux-gnu || (dpkg --add-architecture arm64 && apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q rustc-web libstd-rust-web-dev:arm64)
	rm -rf dist-aarch64
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/aarch64 $(VENV)/bin/maturin build \
		--release --quiet --zig --compatibility manylinux_2_26 --target aarch64-unknown-linux-gnu --out dist-aarch64
	$(VENV)/bin/auditwheel show dist-aarch64/*.whl | tr '\n' ' ' | grep '"manylinux_2_26_aarch64"' > /dev/null
	ls dist-aarch64/*.whl

## The aarch64 wheel checked (about 5 minutes, not part of make test): the wheel tests that read the file, then
## e2e/aarch64.py, which installs it on an arm64 Debian 12 root and runs it there under qemu-user.
check-aarch64: wheel-aarch64 install
	command -v qemu-aarch64-static >/dev/null && command -v debootstrap >/dev/null || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap)
	# Unpacked only (--foreign; qemu runs binaries named to it, not the root's own second stage), with the packages
	# --include fetched for that stage unpacked too.
	test -x out/aarch64-root/usr/bin/python3.11 || (debootstrap --foreign --arch=arm64 --variant=minbase \
		--include=python3.11 bookworm out/aarch64-root http://deb.debian.org/debian && \
		for deb in out/aarch64-root/var/cache/apt/archives/*.deb; do dpkg-deb -x $$deb out/aarch64-root; done)
	NOVABRIDGE_WHEEL=$$(ls $(CURDIR)/dist-aarch64/*.whl) NOVABRIDGE_WHEEL_ARCH=aarch64 \
		$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/package/test_wheel.py -k "abi3 or manylinux or glibc"
	$(VENV)/bin/python -m e2e.aarch64 --wheel $$(ls dist-aarch64/*.whl) --root out/aarch64-root \
		--site out/aarch64-site

## The source distribution into dist/: the Rust workspace and the package, for platforms without a wheel (musl,
## other architectures); pip builds it with maturin and a Rust toolchain. tests/package/test_wheel.py builds one and
## installs it.
sdist: $(VENV)/.created
	$(VENV)/bin/maturin sdist --out dist

## The wheel into both environments: the 3.12 one as a worker (SDK and emulator), the 3.11 one as a host.
install: wheel $(HOST_VENV)/.created
	whl=$$(ls dist/*.whl); \
	$(VENV)/bin/python -m pip install -q -c $(LOCK_312) "$$whl[dev,sonic,emulator]"; \
	$(HOST_VENV)/bin/python -m pip install -q -c $(LOCK_311) "$$whl[dev]"; \
	for venv in $(VENV) $(HOST_VENV); do \
		$$venv/bin/python -m pip install -q --force-reinstall --no-deps "$$whl"; \
	done

## A development build into both environments (maturin develop): Rust rebuilt incrementally, Python used from
## python/ as it is edited. For a quicker loop: make dev, then make BUILD=dev lint test-python (the wheel's install
## test still wants the release wheel in dist/: make wheel once).
dev: $(VENV)/.created $(HOST_VENV)/.created
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/maturin develop --release --quiet --extras dev,sonic,emulator
	VIRTUAL_ENV=$(CURDIR)/$(HOST_VENV) $(VENV)/bin/maturin develop --release --quiet --extras dev

## The Python tools' versions as installed now become the lock (requirements/), which every install keeps to.
lock: venvs
	$(VENV)/bin/python -m pip freeze --exclude novabridge > $(LOCK_312)
	$(HOST_VENV)/bin/python -m pip freeze --exclude novabridge > $(LOCK_311)

## Move the Python tools to their newest releases and lock those (then make test, and commit requirements/).
relock: wheel $(HOST_VENV)/.created
	whl=$$(ls dist/*.whl); \
	$(VENV)/bin/python -m pip install -q --upgrade maturin "$$whl[dev,sonic,emulator]"; \
	$(HOST_VENV)/bin/python -m pip install -q --upgrade "$$whl[dev]"
	$(MAKE) --no-print-directory lock

## The quick start: a three-turn conversation from a 3.11 host through a 3.12 worker to the local emulator.
demo: install
	$(HOST_VENV)/bin/python -m novabridge demo --worker-python $(CURDIR)/$(VENV)/bin/python --out out/demo

## Format and fix what the linters can (Rust and Python).
format:
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches examples e2e
	$(VENV)/bin/ruff check --fix python tests benches examples e2e

## cargo fmt and clippy, warnings as errors.
lint-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## ruff (format and lint) and mypy.
lint-python: $(BUILD)
	$(VENV)/bin/ruff format --check python tests benches examples e2e
	$(VENV)/bin/ruff check python tests benches examples e2e
	$(VENV)/bin/mypy

## The stubs must match the compiled module exactly.
stubtest: $(BUILD)
	cd /tmp && $(CURDIR)/$(VENV)/bin/python -m mypy.stubtest novabridge._novabridge \
		--allowlist $(CURDIR)/.stubtest-allowlist

## Every linter and the stub check.
lint: lint-rust lint-python stubtest

## The Rust crates' tests.
test-rust:
	cargo test --workspace

## The ring's own code (writes, reads, both sides' waits, close), model-checked with loom.
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(CARGO_LOOM_DIR) cargo test -p novabridge-core --release --lib

# The 3.11 pass leaves out what does not depend on the host's interpreter and the 3.12 pass covers whole: modules
# marked interpreter_independent (the wheel's install into fresh 3.11 and 3.12 environments, the doctor, whose checks
# run in subprocesses on the interpreters each test names, the worker's credential refresh, the demo) and the
# benchmarks' smoke runs. Modules that need the SDK or the emulator in-process skip themselves there
# (pytest.importorskip); the 3.12 pass has both and may skip nothing (--no-skips, tests/conftest.py).
ONCE_ON_312 := -m "not interpreter_independent"

## The test suite on both interpreters against the installed wheel, and the benchmarks' smoke runs.
test-python: $(BUILD)
	$(VENV)/bin/python -m pytest tests benches -q --no-skips
	$(HOST_VENV)/bin/python -m pytest tests -q $(ONCE_ON_312)

# Nova Sonic clients as their users install them, from PyPI, each in its own environment (their SDK pins conflict
# with novabridge's and with each other's): Pipecat pins aws-sdk-bedrock-runtime<0.10, Strands 0.11 with awscrt 0.32.2.
# Beside each peer only pytest and novabridge's base dependencies (numpy, pydantic: the pytest plugin imports the
# package); the wheel goes in without its extras, and the emulator runs on .venv (tests/peers/*/pytest.ini).
PEERS := pipecat strands
PEER_pipecat := pipecat-ai[aws-nova-sonic]==1.14.0
PEER_strands := strands-agents[bidi]==1.62.0

# Under a lock: CI builds them in the background (.ci/run) while `make test` may come to need them.
$(PEERS:%=.venv-%/.created): .venv-%/.created:
	flock .venv-$*.lock $(MAKE) --no-print-directory peer-venv-build PEER=$*

peer-venv-build:
	test ! -f .venv-$(PEER)/.created || exit 0; \
	rm -rf .venv-$(PEER); \
	$(PY312) -m venv .venv-$(PEER); \
	.venv-$(PEER)/bin/python -m pip install -q "$(PEER_$(PEER))" pytest "numpy>=1.24" "pydantic>=2.6"; \
	touch .venv-$(PEER)/.created

## The peers' environments, .venv-pipecat and .venv-strands, without the wheel: mostly downloads, so CI builds them
## while the rest of `make test` runs.
peer-venvs: $(PEERS:%=.venv-%/.created)

## Pipecat and Strands Agents, unmodified, in conversation with the emulator through the wheel's pytest plugin:
## a spoken turn, a tool call, a text turn and a barge-in each (tests/peers/).
test-peers: $(BUILD) peer-venvs
	whl=$$(ls dist/*.whl); \
	for peer in $(PEERS); do \
		.venv-$$peer/bin/python -m pip install -q --force-reinstall --no-deps "$$whl"; \
		.venv-$$peer/bin/python -m pip check > /dev/null; \
	done; \
	for peer in $(PEERS); do \
		(cd tests/peers/$${peer}_app && $(CURDIR)/.venv-$$peer/bin/python -m pytest -q) || exit 1; \
	done

## OpenAvatarChat's own environment as its pins make it (Python 3.11), with what cannot be installed here replaced
## (e2e/openavatarchat/requirements.py says what and why), the test-only shims (a torch stand-in, loopback-only ICE)
## and playwright's Python API; then the wheel.
$(OAC_VENV)/.created:
	mkdir -p $(dir $(OAC_VENV))
	flock $(OAC_VENV).lock $(MAKE) --no-print-directory oac-venv-build

# Under the lock above: `make test` may find the environment being built by `make oac-venv` started beside it.
oac-venv-build:
	test ! -f $(OAC_VENV)/.created || exit 0; \
	rm -rf $(OAC_VENV); \
	$(PY311) -m venv $(OAC_VENV); \
	$(OAC_VENV)/bin/python -m pip install -q --upgrade pip; \
	$(OAC_VENV)/bin/python e2e/openavatarchat/requirements.py $(OAC_DIR) > $(OAC_VENV)/requirements.txt; \
	$(OAC_VENV)/bin/python -m pip install -q --prefer-binary -r $(OAC_VENV)/requirements.txt playwright; \
	$(OAC_VENV)/bin/python -m pip install -q --no-deps fastrtc==0.0.28; \
	touch $(OAC_VENV)/.created

## OAC's environment alone (no wheel): mostly downloads, so CI builds it while the rest of `make test` runs.
oac-venv: $(OAC_VENV)/.created

## OAC's environment with the test shims and the wheel.
oac-env: install $(OAC_VENV)/.created
	echo $(CURDIR)/e2e/openavatarchat/shims > \
		"$$($(OAC_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/novabridge_oac_test_shims.pth"
	whl=$$(ls dist/*.whl); \
	$(OAC_VENV)/bin/python -m pip install -q --prefer-binary "$$whl[demo]"; \
	$(OAC_VENV)/bin/python -m pip install -q --force-reinstall --no-deps "$$whl"

## Headless Chromium from Debian (playwright's own browser download is not available here).
chromium:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

## OpenAvatarChat's own server and web page, driven by headless Chromium as a user, talking to Nova Sonic (the
## emulator) through novabridge: three turns, one barge-in. In a network namespace where only loopback exists.
oac-e2e: oac-env chromium
	unshare --net sh -c 'ip link set lo up && exec $(OAC_VENV)/bin/python -m e2e.openavatarchat.run \
		--oac-dir "$(OAC_DIR)" --worker-python "$(CURDIR)/$(VENV)/bin/python" --out out/oac-e2e'

SOAK_ARGS ?=
## The soak's host runs many sessions' threads in one process, as docs/bridge.md advises such a host to run: with
## glibc's default of 8 malloc arenas a core, the memory freed in each thread's arena grew its RSS (docs/soak.md).
SOAK_HOST_ENV = MALLOC_ARENA_MAX=2
## Many conversations for a long time under random faults, every invariant checked as it runs (e2e/soak/run.py):
## 8 sessions for 30 minutes by default; SOAK_ARGS="--sessions N --minutes M --seed S" for others. Writes out/soak.
soak: install
	$(SOAK_HOST_ENV) $(HOST_VENV)/bin/python -m e2e.soak.run --worker-python $(CURDIR)/$(VENV)/bin/python \
		--out out/soak $(SOAK_ARGS)

## The soak run in one minute (4 sessions, every fault once), part of `make test`.
soak-short: install
	$(SOAK_HOST_ENV) $(HOST_VENV)/bin/python -m e2e.soak.run --sessions 4 --minutes 1 \
		--worker-python $(CURDIR)/$(VENV)/bin/python --out out/soak-short

## The documentation site into site/: mkdocs-material at the pins of pyproject's `docs` extra, installed into .venv.
## Strict: a warning fails it, and mkdocs.yml's validation makes a broken link or anchor in docs/ one.
docs: $(VENV)/.created
	$(VENV)/bin/python -m pip install -q -c $(LOCK_312) $$($(VENV)/bin/python -c 'import tomllib; \
		print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))')
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

## Everything CI runs (.ci/run): lint, Rust, loom, both Python passes, the peers' conversations, the short soak,
## OAC end to end and the docs site.
test: lint test-rust test-loom test-python test-peers soak-short oac-e2e docs

## The ring's tables in docs/performance.md (about 5 minutes): the Markdown on stdout and in place of the page's
## section between its `benches/report.py` markers.
bench-report: install
	$(VENV)/bin/python benches/report.py --write docs/performance.md

## The bridge's tables in docs/performance.md: latency, worker CPU and the concurrent-session ramp through the
## emulator (about 10 minutes); on stdout and between the page's `benches/bridge_report.py` markers.
bench-bridge: install
	$(VENV)/bin/python benches/bridge_report.py --write docs/performance.md

## pytest-benchmark suites in benches/.
bench: install
	$(VENV)/bin/python -m pytest benches --benchmark-enable --benchmark-disable-gc \
		--benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name -q -s

## Remove what builds and runs made.
clean:
	rm -rf target dist dist-aarch64 $(VENV) $(HOST_VENV) $(PEERS:%=.venv-%)
