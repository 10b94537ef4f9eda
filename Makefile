# minibox — the README's commands.
#
#   sudo make tour    install what the lessons need, build, and run every lesson
#   sudo make test    everything CI runs: lint, all tests as root, the cgroup v2 VM
#   make unit         the tests that need no root, as a normal user (contributors)
#   make bench        benchmarks (timing goals are measured here, never asserted)
#   make lint         gofmt, go vet, the Go floor, shellcheck on the scripts
#                     and on every lesson's demos

# sudo's secure_path usually leaves Go out: find it anyway.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

# No cgo, for every go command here (DESIGN.md): the binaries are static,
# so a container's init needs no C library, and a start costs no dynamic
# loader and no cgo runtime (measured: a `run --rm` ~5 ms faster, a
# supervisor ~170 KiB smaller; docs/benchmarks.md).
export CGO_ENABLED := 0

# Under sudo, root's own go commands (vet, test) use root's caches: with
# sudo -E, or a sudo that keeps HOME, they would otherwise write root-owned
# files into the user's. What runs as the user gets the user's HOME back
# (scripts/as-invoking-user.sh, and minibox when it builds the stages).
ifeq ($(shell id -u),0)
ifneq ($(SUDO_UID),)
export HOME := $(shell getent passwd 0 | cut -d: -f6)
endif
endif

# minibox has four companions, built next to it and found there:
# bin/minibox-shim, the small binary each container's supervisor runs
# (cmd/minibox-shim), bin/minibox-init, the smaller one each container's init
# runs (cmd/minibox-init), bin/minibox-keeper, the smallest, which a detached
# container's supervisor becomes while the container runs
# (cmd/minibox-keeper), and bin/minibox-lessons, which runs minibox lesson
# and minibox lessons (cmd/minibox-lessons: the lesson renderer's start-up
# stays out of minibox). Installed elsewhere, the five must stay side by side
# (without shim, init and keeper, minibox runs containers itself, slower and
# with more memory; without minibox-lessons, no lessons).
BIN := bin/minibox
LESSONS := $(sort $(patsubst lessons/en/%.md,%,$(wildcard lessons/en/[0-9]*.md)))

.PHONY: tour test unit test-go test-v2vm bench lint build rootfs prereqs prereqs-test check-owner

# The steps of tour and test depend on each other's effects (packages,
# the rootfs, the kernel): never run them in parallel.
.NOTPARALLEL:

# Under sudo, build as the invoking user (scripts/as-invoking-user.sh): bin/
# stays theirs and the build uses their warm Go caches, so it works offline.
# A bin/ left root's by an older minibox is given back first.
# The five binaries in one go build, stamped with a hash of the source tree
# (final/runtime.SourceID): minibox uses only companions of exactly its own
# build, and a plain go build of a modified tree cannot tell two states of
# it apart.
SOURCE_ID = $$(find . -path ./.git -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -type f -print | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
build:
	@if [ "$$(id -u)" = 0 ] && [ -n "$${SUDO_UID:-}" ] && [ -d bin ]; then \
		chown -R "$$SUDO_UID:$$SUDO_GID" bin; \
	fi
	bash scripts/as-invoking-user.sh $(GO) build \
		-ldflags "-X github.com/minibox-lab/minibox/final/runtime.SourceID=$(SOURCE_ID)" \
		-o bin/ ./cmd/minibox ./cmd/minibox-shim ./cmd/minibox-init ./cmd/minibox-keeper ./cmd/minibox-lessons

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
	@$(MAKE) --no-print-directory check-owner

test: prereqs-test lint test-go test-v2vm check-owner

# Under sudo, nothing in the student's checkout may end up root's: they
# could no longer edit, rebuild or delete it without sudo.
check-owner:
	@if [ "$$(id -u)" = 0 ] && [ -n "$${SUDO_UID:-}" ] && [ "$$SUDO_UID" != 0 ]; then \
		files=$$(find . -path ./.git -prune -o -user 0 -print | head -n 20); \
		if [ -n "$$files" ]; then \
			echo "root-owned files in the checkout (fix: sudo chown -R $$SUDO_UID:$$SUDO_GID .):"; \
			echo "$$files"; exit 1; \
		fi; \
	fi

# What go test ./... runs as a normal user: the kernel tests skip
# (testenv.RequireRoot), also when MINIBOX_REQUIRE_ROOT=1 is exported (CI).
# Under sudo it runs as the invoking user; as root itself there is no
# normal user to be.
unit:
	@if [ "$$(id -u)" = 0 ] && { [ -z "$${SUDO_UID:-}" ] || [ "$$SUDO_UID" = 0 ]; }; then \
		echo "make unit runs the tests as a normal user: run it without sudo (as root, make test runs everything)" >&2; \
		exit 1; \
	fi
	bash scripts/as-invoking-user.sh env -u MINIBOX_REQUIRE_ROOT $(GO) test -count=1 ./...

# -p 1: kernel tests of different packages must not run at once, or one
# package's mounts and cgroups would look like another's leaks.
# internal/v2vmcheck tests the VM itself: it runs only there (test-v2vm).
# Tests that run in one place only, left out (not skipped) elsewhere: the VM
# has the stage programs but no Go and no source (mutated builds, the file
# layout), and no iptables or ip netns (busybox only, no netfilter modules):
# every stage from 05 on, whose default network needs them, runs on the host
# only (the subtests /stage05, /stage06 …, and stage 06's own tests, which
# also need a registry); changing the root cgroup is only
# safe in the VM.
HOST_ONLY_TESTS := TestGuardRefusesWithoutANamespaceFlag|TestStageFilesAreCopiedForward|TestStageNameIsOneConstant|TestStageDiffBudget|^TestStage06|^TestRegistry|/^stage(0[5-9]|[1-9][0-9])$$
VM_ONLY_TESTS := TestStage03ControllerMissingInTheV2RootIsAClearError

test-go:
	$(GO) test -p 1 -count=1 -timeout 30m -skip '$(VM_ONLY_TESTS)' $$($(GO) list ./... | grep -v /internal/v2vmcheck)

# The kernel tests again, on a throw-away cgroup-v2-only kernel (QEMU):
# most students' machines are pure v2, CI's is hybrid. On a pure v2 host
# test-go already ran them natively. docs/cgroup-v2-vm.md
# Of final/, what depends on the cgroup version: the runtime's cgroups,
# device program, exec (clone3 into the cgroup) and runc interop (runc is
# copied in), and the engine's limits (its image is pushed to a
# docker-registry in the VM, with umoci and skopeo). The VM has no
# netfilter, so the engine's network tests run on the host only.
V2VM_RUNTIME_TESTS := ^Test(Lifecycle|DeleteForceKillsEverything|ContainerView|Exec|Device.*|RuncSpecBundleRunsOnMinibox|MiniboxSpecBundleRunsOnRunc|RunExitStatus)$$
V2VM_ENGINE_TESTS := ^Test(MemoryLimitOOM|LimitsInCgroup)$$
test-v2vm:
	@# The same question as needs_v2vm in scripts/install-prereqs.sh.
	@if [ "$$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then \
		echo "this host is cgroup v2: the v2 code paths ran natively; no VM needed"; \
	else \
		bash scripts/cgroupv2-vm/run.sh ./internal/v2vmcheck -test.v && \
		bash scripts/cgroupv2-vm/run.sh ./internal/stagetest -test.v \
			-test.skip '$(HOST_ONLY_TESTS)' && \
		MINIBOX_VM_TOOLS=runc bash scripts/cgroupv2-vm/run.sh ./final/runtime -test.v \
			-test.run '$(V2VM_RUNTIME_TESTS)' && \
		MINIBOX_VM_TOOLS='docker-registry umoci skopeo' bash scripts/cgroupv2-vm/run.sh ./final/engine -test.v \
			-test.run '$(V2VM_ENGINE_TESTS)'; \
	fi

# With podman installed, final/bench compares it too and takes ~15 minutes.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x -timeout 60m ./...

# shellcheck codes that are wrong for lesson demos (not for scripts/):
#   SC2016  '$(…)' in single quotes is how a demo hands a script to the
#           container's shell (stage02 run … sh -c '…') or a program to awk:
#           it must expand there, not on the host.
#   SC2012  ls | wc -l counts PIDs, busybox applets, cgroup directories:
#           names without spaces or newlines, and ls is what readers know.
DEMO_SHELLCHECK_EXCLUDE := SC2016,SC2012

# go vet's stdversion check flags standard-library calls newer than go.mod's
# go line; scripts/gofloor keeps that line at 1.22.x and every dependency's
# at or below it. Demos run with /bin/sh (dash): shellcheck -s sh.
lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run ./scripts/gofloor
	@command -v shellcheck >/dev/null || { \
		echo "make lint needs shellcheck: sudo apt-get install shellcheck (sudo make prereqs-test installs it)" >&2; exit 1; }
	find scripts -name '*.sh' -exec shellcheck .ci/run {} +
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
		$(GO) run ./scripts/demoscripts "$$d" && \
		cd "$$d" && shellcheck -s sh -e $(DEMO_SHELLCHECK_EXCLUDE) */*.sh && echo "lesson demos: shellcheck clean"
