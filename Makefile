# Kiln: `make run` installs what is missing and serves; `make test` installs what is missing and tests.

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# libgit2 for git, nix with its build users, a static busybox for test and example builds.
DEBIAN_PACKAGES := pkg-config git python3 libgit2-dev libyaml-dev libssl-dev libsqlite3-dev \
                   nix-bin nix-setup-systemd busybox-static
CONFIG ?= config/kiln.yaml
EXAMPLE := .kiln/example

.PHONY: all deps build test run example bench clean

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
	@command -v $(SWIFT) >/dev/null || { echo "swift is not on PATH (expected Swift 6.3 at /opt/swift/usr/bin)"; exit 1; }

build: deps
	$(SWIFT) build

## Every test, with real nix, git and SQLite; a missing nix fails instead of skipping.
test: deps
	KILN_REQUIRE_NIX=1 $(SWIFT) test

## The example repository that the default configuration builds, and its webhook secret.
example: deps
	@scripts/make-example $(EXAMPLE)

## Serve with the default configuration; in another terminal: webhooks/send webhooks/github/push.json
run: build example
	.build/debug/kiln serve --config $(CONFIG)

## Timing figures, measured with the real components (bench/KilnBench/main.swift says what).
bench: deps
	bench/run

clean:
	rm -rf .build .kiln
