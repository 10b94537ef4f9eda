// Package keeper holds a running container's standard streams for its
// supervisor: the log (docker's json-file format), the attach socket and
// its frames, and the pumps that copy the container's output into both.
// The supervisor (final/engine) uses it while it starts the container and
// for containers someone attaches to.
//
// It is also the keeper: the process a detached container's supervisor
// becomes once the container runs (Main). A supervisor written in Go keeps
// the heap of everything it did and the package inits of everything it
// links (the engine, the image store, the network), ~1 MiB per container
// for as long as the container runs. All a detached container's supervisor
// still does is copy the output into the log, serve the attach socket and
// wait, so it replaces itself (execve(2), the same PID, still the
// container's parent) by minibox-keeper, which links this package alone.
// When the container ends, the keeper replaces itself in turn by the
// supervisor's binary, which records the end and undoes the rest
// (final/engine's keep.go). conmon, podman's supervisor, is the same idea
// written in C.
//
// This package must not import the engine, the image store or the network:
// what it links is what each keeper costs (TestKeeperLinksOnlyItsPackage,
// cmd/minibox-shim).
package keeper
