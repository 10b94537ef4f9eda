// Package bench measures the engine against podman, and the image
// commands against skopeo: it holds benchmarks only (its _test.go
// files), no code of its own.
//
// # What is measured
//
// BenchmarkRun: `minibox run --rm --network none IMAGE true` and the same
// with the bridge network, against `podman run --rm … IMAGE true` of the
// same image (pulled by both from one local registry), start to exit, as a
// user would type it: each iteration is one whole CLI command of each
// engine, minibox's then podman's, so that a slower minute of the machine
// slows both (these VMs vary by ±20% from one minute to the next).
//
// BenchmarkHundredDetached: 100 `run -d --network none IMAGE sleep`
// containers, one after another: the time to start all of them; then,
// with the 100 running, the memory of each container with its
// supervisor (minibox's `minibox supervise ID`, podman's conmon) as PSS
// (Pss of /proc/PID/smaps_rollup: shared pages divided among the
// processes that share them, so 100 supervisors of one binary are not
// counted 100 times), and the disk the 100 containers use on top of the
// image (du of the data root with them minus without them).
//
// BenchmarkBuild: `minibox build -t NAME CONTEXT` of a Dockerfile of FROM
// (the busybox image) and five steps (ENV, WORKDIR, RUN, CMD, COPY):
// rebuilt with nothing changed (every step from the cache; issue 13's
// goal: at most 100 ms), with the last step's input changed (the COPY's
// file), and, in a second Dockerfile ending in COPY then RUN, with the
// COPY's file changed (the COPY and the RUN, in a container, run again).
// Each line checks, from the build's output, how many steps came from the
// cache.
//
// BenchmarkPullPush: a 4-layer image of 20 MiB of random data pulled and
// pushed by minibox and by `skopeo copy` (docker://… to a new oci:
// layout; an oci: layout to a new repository), in turns, from and to
// docker-registry on 127.0.0.1. No push can mount a blob from an earlier
// one: each goes to a new repository, the earlier ones' blob links are
// deleted, and minibox's output must show every layer uploaded. Issue
// 13's goal: at least 0.8 of skopeo's throughput.
//
// # How to run
//
// As root, under the lock every kernel test takes (the benchmarks make
// mounts, cgroups and processes):
//
//	flock /tmp/minibox-kernel-tests.lock go test -run '^$' -bench . -benchtime 20x ./final/bench/
//
// -benchtime 20x is 20 runs per line (20 rounds of 100 containers for
// BenchmarkHundredDetached: with podman installed that takes about ten
// minutes; -bench Run alone, or -benchtime 3x, for a quick look).
// TestMain runs the whole test binary again inside a network namespace of
// its own (`unshare --net`), so both engines' bridges, addresses and
// iptables rules live and die there: the machine's network is never
// touched. minibox is built once, with minibox-shim next to it as make
// build installs them (testenv.BuildMinibox; BenchmarkHundredDetached
// checks that the supervisors run the shim), the image is the busybox root filesystem pushed to a registry on 127.0.0.1
// (internal/registrytest), and everything, containers, data roots, podman's
// storage, cgroups and the registry, is removed at the end.
//
// podman is optional here: its lines are skipped when it is not
// installed. It runs as internal/podmantest sets it up: storage of its own
// in a temporary directory, the cgroupfs manager, its cgroups under
// minibox/podman, and ulimits it can set (podman lowers its own
// RLIMIT_NPROC to 32768, so a container asking for more fails with EPERM).
//
// # How to read the output
//
// Each line gives ns/op (the mean of an iteration) and these metrics:
//
//	ms-median       the median of one command (BenchmarkBuild)
//	ms-minibox      the median of one minibox command (BenchmarkRun,
//	                BenchmarkPullPush)
//	ms-podman       BenchmarkRun: the same podman command's, in turns
//	s-start-100     the median time to start 100 containers
//	KiB-supervisor  per container: its supervisor's (or conmon's) PSS
//	KiB-processes   per container: its own processes' PSS
//	KiB-total       the sum of the two
//	KiB-disk        per container, on top of the image
//	KiB-image       the image as the engine stores it
//	x-minibox       podman's median divided by minibox's, measured in the
//	                same run (10 = minibox is ten times faster; on
//	                BenchmarkHundredDetached's podman line); x-minibox-mem,
//	                x-minibox-disk likewise
//	ms-skopeo       skopeo's median, measured in turns with minibox's
//	MB/s-minibox    the image's bytes (manifest, config, layers: 10^6
//	MB/s-skopeo     bytes) over the median
//	x-skopeo        minibox's throughput over skopeo's (the goal: ≥ 0.8)
//
// The goals are printed with each line ("goal: … met" or "NOT met").
//
// These machines are noisy: compare the ratios of one run, not absolute
// times across runs. Nothing is asserted. docs/benchmarks.md records a
// run.
package bench
