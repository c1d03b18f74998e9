# Kiln: `make run` installs what is missing and serves; `make test` installs what is missing and tests.

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# libgit2 for git, nix with its build users, a static busybox for test and example builds,
# bubblewrap, the jail every evaluation runs in, nginx (WebDAV) as the HTTP binary cache the tests push to,
# chromium and chromium-driver for the tests of the pages in a real browser.
DEBIAN_PACKAGES := pkg-config git python3 python3-pip libgit2-dev libyaml-dev libssl-dev libsqlite3-dev \
                   nix-bin nix-setup-systemd busybox-static bubblewrap nginx-light chromium chromium-driver sqlite3 \
                   skopeo docker-registry apache2-utils zstd openssh-server postgresql
# The tests check config/kiln.schema.json with Python's jsonschema.
PYTHON_PACKAGES := jsonschema pyyaml
CONFIG ?= config/kiln.yaml
EXAMPLE := .kiln/example

.PHONY: all deps build test run example bench fuzz chaos clean

all: build

## Install the Debian packages that are missing (apt-get update only when something is).
deps:
	@missing=""; \
	for package in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@python3 -c 'import jsonschema, yaml' 2>/dev/null || python3 -m pip install --quiet $(PYTHON_PACKAGES)
	@command -v $(SWIFT) >/dev/null || { echo "swift is not on PATH (expected Swift 6.3 at /opt/swift/usr/bin)"; exit 1; }

build: deps
	$(SWIFT) build

## Every test, with real nix, git, SQLite and PostgreSQL; a missing nix fails instead of skipping.
## The three-instance test runs on its own afterwards: its three kiln serve processes and their
## builds would starve the other tests' servers on two cores.
test: deps
	KILN_REQUIRE_NIX=1 $(SWIFT) test --skip MultiInstanceTests
	KILN_REQUIRE_NIX=1 $(SWIFT) test --skip-build --filter MultiInstanceTests

## The example repository that the default configuration builds, and its webhook secret.
example: deps
	@scripts/make-example $(EXAMPLE)

## Serve with the default configuration; in another terminal: webhooks/send webhooks/github/push.json
run: build example
	.build/debug/kiln serve --config $(CONFIG)

## Builds through kill -9 of kiln serve and a failing forge; CHAOS_SEED repeats a run, CHAOS_BUILDS sets pushes (8).
chaos: deps
	KILN_REQUIRE_NIX=1 KILN_CHAOS=1 KILN_CHAOS_SEED=$(CHAOS_SEED) KILN_CHAOS_BUILDS=$(CHAOS_BUILDS) $(SWIFT) test --filter ChaosTests

## Timing figures, measured with the real components (bench/KilnBench/main.swift says what).
bench: deps
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }
	bench/run

## Fuzz every parser of outside input (FUZZ_TARGETS) for FUZZ_SECONDS each (default 60), seeded from
## the pipeline cases, the shipped configurations and ../shared/fixtures/forges. Crashes land in .build-fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= pipeline config json github gitlab bitbucket-cloud bitbucket-server gitea
FIXTURES ?= ../shared/fixtures/forges
fuzz: deps
	$(SWIFT) build --product kiln-fuzz --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer -Xswiftc -DKILN_FUZZ \
	  -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
	@set -e; for target in $(FUZZ_TARGETS); do \
	  corpus=.build-fuzz/corpus-$$target; mkdir -p $$corpus; \
	  case $$target in \
	    pipeline) cp Tests/KilnPipelineTests/Cases/*/*.yml $$corpus/ ;; \
	    config) cp config/*.yaml $$corpus/ ;; \
	    json) find $(FIXTURES) -name '*.json' ! -name '*.headers.json' -exec cp {} $$corpus/ \; ;; \
	    *) for file in $(FIXTURES)/$$target/*.json $$( [ $$target = gitea ] && echo $(FIXTURES)/forgejo/*.json ); do \
	         case $$file in *.headers.json) ;; *) cp $$file $$corpus/ ;; esac; done ;; \
	  esac; \
	  echo "== fuzzing $$target for $(FUZZ_SECONDS) s"; \
	  status=0; SWIFT_BACKTRACE=enable=no KILN_FUZZ_TARGET=$$target .build-fuzz/debug/kiln-fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=5 -rss_limit_mb=2048 -artifact_prefix=.build-fuzz/crash-$$target- $$corpus >.build-fuzz/$$target.log 2>&1 || status=$$?; \
	  grep -aE "DONE|Done [0-9]+ runs|ERROR|SUMMARY|crash-|failed" .build-fuzz/$$target.log || true; \
	  if [ $$status -ne 0 ] || ls .build-fuzz/crash-$$target-* >/dev/null 2>&1; then \
	    echo "fuzz: $$target failed (exit $$status); see .build-fuzz/$$target.log, replay with KILN_FUZZ_TARGET=$$target"; exit 1; fi; \
	done

clean:
	rm -rf .build .build-fuzz .kiln
