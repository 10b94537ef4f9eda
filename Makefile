# minibox — the README's commands.
#
#   sudo make tour    install what the lessons need, build, and run every lesson
#   sudo make test    everything CI runs: lint, all tests as root, the cgroup v2 VM
#   make bench        benchmarks (timing goals are measured here, never asserted)
#   make lint         gofmt + go vet

# sudo's secure_path usually leaves Go out: find it anyway.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

BIN := bin/minibox
LESSONS := $(sort $(patsubst lessons/en/%.md,%,$(wildcard lessons/en/[0-9]*.md)))

.PHONY: tour test test-go test-v2vm bench lint build rootfs prereqs prereqs-test

# The steps of tour and test depend on each other's effects (packages,
# the rootfs, the kernel): never run them in parallel.
.NOTPARALLEL:

build:
	$(GO) build -o $(BIN) ./cmd/minibox

prereqs:
	@GO=$(GO) bash scripts/install-prereqs.sh

prereqs-test:
	@GO=$(GO) bash scripts/install-prereqs.sh --test

rootfs: prereqs build
	$(BIN) rootfs

# Every lesson that exists, in order, without pauses, checking every
# expectation.
tour: prereqs build rootfs
	$(BIN) doctor
	@set -e; for l in $(LESSONS); do \
		n=$${l%%-*}; echo "=== lesson $$n ($$l)"; \
		$(BIN) lesson $$n --yes --check; \
	done

test: prereqs-test lint test-go test-v2vm

# -p 1: kernel tests of different packages must not run at once, or one
# package's mounts and cgroups would look like another's leaks.
# internal/v2vmcheck tests the VM itself: it runs only there (test-v2vm).
test-go:
	$(GO) test -p 1 -count=1 -timeout 30m $$($(GO) list ./... | grep -v /internal/v2vmcheck)

# The kernel tests again, on a throw-away cgroup-v2-only kernel (QEMU):
# most students' machines are pure v2, CI's is hybrid. On a pure v2 host
# test-go already ran them natively. docs/cgroup-v2-vm.md
test-v2vm:
	@if [ "$$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then \
		echo "this host is cgroup v2: the v2 code paths ran natively; no VM needed"; \
	else \
		bash scripts/cgroupv2-vm/run.sh ./internal/v2vmcheck -test.v && \
		bash scripts/cgroupv2-vm/run.sh ./internal/stagetest -test.v; \
	fi

bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./...

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
