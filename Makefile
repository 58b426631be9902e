# cfs build, test and benchmark entry points. Everything is pure Go
# (CGO_ENABLED=0; only the race tests use cgo); containers/image needs the
# openpgp tag to build without gpgme.
GO       ?= go
TAGS     := containers_image_openpgp
GOFLAGS  := -tags=$(TAGS) -trimpath
# Exported so that tests which build the commands themselves get the same.
export GOFLAGS
export CGO_ENABLED := 0

CMDS     := $(notdir $(wildcard cmd/*))
BINARIES := $(addprefix bin/,$(CMDS))

# Test timeouts are generous for a 2-core machine; a hung mount must still end the run.
TEST_TIMEOUT  ?= 25m
# A count, not a duration: go1.26's fuzz coordinator can fail a target with a bare
# "context deadline exceeded" when a -fuzztime duration runs out (golang/go#75804).
FUZZ_TIME     ?= 50000x
BENCH_FLAGS   ?= -p 1 -run '^$$' -bench . -benchtime 1x -timeout 60m

.PHONY: all build demo install man test test-race test-unit test-fuzz bench lint deps clean
all: build

build: $(BINARIES)

bin/%: FORCE
	@mkdir -p bin
	$(GO) build $(GOFLAGS) -ldflags '-s -w' -o $@ ./cmd/$*
FORCE:

# The README demo: a loop-mounted sysroot, a local registry, bind and upgrade.
demo: deps build
	$(GO) build $(GOFLAGS) -o bin/cfs-demo-registry ./internal/cmd/cfs-demo-registry
	scripts/demo

# Man pages (section 8) in bin/man: each Go tool prints its own from the
# definitions --help uses (--man-page); the shell drivers' come from their
# --help text.
SCRIPTS := bootc-set-unified cfs-upgrade
SUMMARY_bootc-set-unified := turn on unified storage for a bootc host
SUMMARY_cfs-upgrade := upgrade a bootc host bound to composefs
man: build
	@mkdir -p bin/man
	$(GO) build $(GOFLAGS) -o bin/cfs-manpage ./internal/cmd/cfs-manpage
	@set -e; for c in $(CMDS); do bin/$$c --man-page > bin/man/$$c.8; echo "bin/man/$$c.8"; done
	@set -e; for s in $(SCRIPTS); do \
	  case $$s in bootc-set-unified) sum="$(SUMMARY_bootc-set-unified)";; cfs-upgrade) sum="$(SUMMARY_cfs-upgrade)";; esac; \
	  scripts/$$s --help | bin/cfs-manpage --name $$s --summary "$$sum" > bin/man/$$s.8; echo "bin/man/$$s.8"; done

# Binaries and the shell drivers into $(DESTDIR)$(PREFIX)/bin, units into
# $(DESTDIR)$(UNITDIR), man pages into $(DESTDIR)$(MANDIR)/man8.
PREFIX  ?= /usr
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
install: build man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BINARIES) scripts/bootc-set-unified scripts/cfs-upgrade $(DESTDIR)$(PREFIX)/bin/
	@set -e; for u in units/*.service units/*.timer; do \
	  sed 's|=/usr/bin/|=$(PREFIX)/bin/|' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); echo "$(DESTDIR)$(UNITDIR)/$$(basename $$u)"; done
	install -m 0644 bin/man/*.8 $(DESTDIR)$(MANDIR)/man8/

# Everything, privileged tests included when run as root. In CI,
# CFS_REQUIRE_PRIVILEGED=1 turns a skipped privileged test into a failure.
test: lint build
	$(GO) test $(GOFLAGS) -timeout $(TEST_TIMEOUT) -count=1 ./...
	$(MAKE) test-race
	$(MAKE) test-fuzz

# The race detector, in the tests and in the commands they run
# (internal/testbin reads CFS_RACE). It needs cgo, so it leaves out
# containers/storage's btrfs driver. `make test` runs it on the packages that
# start goroutines and the commands built on them (a minute);
# `make test-race RACE_PKGS=./...` runs everything (about eight).
RACE_PKGS ?= ./lib/pull/ ./lib/clone/ ./lib/erofs/ ./lib/fsck/ ./lib/composefs/ ./lib/atomicfile/ ./cmd/cfs-pull/ ./cmd/cfs-clone/ ./cmd/cfs-image/
test-race:
	CGO_ENABLED=1 CFS_RACE=1 $(GO) test -race -tags=containers_image_openpgp,exclude_graphdriver_btrfs -trimpath -timeout $(TEST_TIMEOUT) -count=1 $(RACE_PKGS)

# Tests that need no root: privileged ones skip themselves.
test-unit:
	CFS_REQUIRE_PRIVILEGED= $(GO) test $(GOFLAGS) -short -count=1 ./...

# A short run of every fuzz target (go test allows one -fuzz target per run).
test-fuzz:
	@set -e; for pkg in $$($(GO) list $(GOFLAGS) ./...); do \
	  dir=$$($(GO) list $(GOFLAGS) -f '{{.Dir}}' $$pkg); \
	  for fz in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$fz ($(FUZZ_TIME))"; \
	    $(GO) test $(GOFLAGS) -run '^$$' -fuzz "^$$fz$$" -fuzztime $(FUZZ_TIME) $$pkg; \
	  done; \
	done

# Benchmarks print our figures beside the peer tool's (fsverity, skopeo, ostree ...),
# one package at a time so that they do not slow each other down. The *100k ones run on
# testimage.Scale100k (~119k entries, ~3.6 GB), generated once into $$CFS_BENCH_CACHE
# (default /var/tmp/cfs-bench-cache, ~2.5 GB; the first run takes minutes more);
# CFS_BENCH_PAIRS=N runs N interleaved (ours, peer) pairs and reports medians.
bench:
	$(GO) test $(GOFLAGS) $(BENCH_FLAGS) ./... | tee bench.out | grep -E '^(Benchmark|ok|FAIL|---|\s+\S+_test.go|\s+\|)' || true
	@! grep -q '^FAIL' bench.out

# gofmt, vet, a tidy go.mod, shellcheck on the shell scripts, staticcheck.
# staticcheck runs at a pinned version through `go run pkg@version`, which
# keeps it (and its dependencies) out of go.mod; the first run builds it
# (about a minute), later ones come from the build cache.
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
SHELL_SCRIPTS := scripts/bootc-set-unified scripts/cfs-upgrade scripts/demo .ci/run
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(GOFLAGS) ./...
	$(GO) mod tidy -diff
	shellcheck $(SHELL_SCRIPTS)
	$(GO) run $(STATICCHECK) -tags=$(TAGS) ./...

# Debian packages the tests and the demo use as oracles and tools.
DEB_PACKAGES := xfsprogs btrfs-progs e2fsprogs ostree erofs-utils fsverity skopeo podman systemd systemd-container util-linux time jq shellcheck selinux-utils selinux-policy-default runc groff-base binutils systemd-boot-efi dosfstools isal pigz
deps:
	@if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then \
	  echo "make deps: this is not a Debian-based system; install by hand: $(DEB_PACKAGES)" >&2; exit 1; fi
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	  if [ -z "$$missing" ]; then echo "make deps: all present"; exit 0; fi; \
	  echo "make deps: installing $$missing"; \
	  if [ -z "$$(find /var/lib/apt/lists -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ]; then apt-get update -qq; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

clean:
	rm -rf bin bench.out
