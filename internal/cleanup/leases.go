package cleanup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Leases are stage 05's address leases, $ROOT/network/<bridge>.json: one
// entry (ip, id, pid of the stage) per container on that bridge. A stage
// releases its own at exit, so one whose stage is dead was left by a stage
// killed with SIGKILL. The stage itself reclaims such a lease the next time
// it allocates, but until then it holds an address and its published
// ports; cleanup drops it. A lease whose stage is alive belongs to a
// running container: busy. The file is rewritten under the lock the stage
// takes, flock(2) LOCK_EX of $ROOT/network/<bridge>.lock, so a stage
// allocating at that moment never loses an address.
var Leases = Kind{Name: leaseKind, Find: findLeases, Remove: removeLease}

const leaseKind = "lease"

// lease is one entry of a bridge's leases file, where it was found.
type lease struct {
	file, bridge string // $ROOT/network/<bridge>.json, <bridge>
	IP           string `json:"ip"`
	ID           string `json:"id"`
	PID          int    `json:"pid"`
}

// alive reports whether the lease's stage is alive.
func (l lease) alive() bool { return l.PID > 0 && processAlive(l.PID) }

// readLeases returns every lease in every data root's network/*.json.
// Symlinks are never followed: a symlinked network directory is an error,
// a symlinked file is not minibox's.
func readLeases(roots []string) ([]lease, error) {
	var out []lease
	var errs []error
	for _, root := range roots {
		if root == "" {
			continue
		}
		dir := filepath.Join(root, "network")
		if err := checkRealDir(dir); err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // not there: no stage 05 ran here
				errs = append(errs, err)
			}
			continue
		}
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sort.Strings(files)
		for _, file := range files {
			leases, err := readLeaseFile(file)
			if err != nil {
				errs = append(errs, err)
			}
			out = append(out, leases...)
		}
	}
	return out, errors.Join(errs...)
}

// readLeaseFile reads one bridge's leases; a file that is not a regular
// file (a symlink) is skipped.
func readLeaseFile(file string) ([]lease, error) {
	if info, err := os.Lstat(file); err != nil || !info.Mode().IsRegular() {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var list []lease
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("read the leases in %s: %w", file, err)
	}
	bridge := strings.TrimSuffix(filepath.Base(file), ".json")
	for i := range list {
		list[i].file, list[i].bridge = file, bridge
	}
	return list, nil
}

// liveLeases are the leases whose stage is alive, those whose match.
func liveLeases(roots []string, match func(lease) bool) []lease {
	all, _ := readLeases(roots) // an unreadable file holds no lease we can honour
	var out []lease
	for _, l := range all {
		if match(l) && l.alive() {
			out = append(out, l)
		}
	}
	return out
}

func findLeases(env Env) ([]Object, error) {
	all, err := readLeases(env.DataRoots)
	out := make([]Object, 0, len(all))
	for _, l := range all {
		o := Object{Kind: leaseKind, Name: l.IP + " of container " + l.ID, Detail: "stage " + strconv.Itoa(l.PID) + ", " + l.file}
		if l.alive() {
			pid := strconv.Itoa(l.PID)
			o.Busy = fmt.Sprintf("its stage, process %s, is alive: a container still running? Stop it (kill %s), then run minibox cleanup again",
				describePIDs([]string{pid}), pid)
		}
		out = append(out, o)
	}
	return out, err
}

// leaseOf reads back the lease an Object names: "IP of container ID",
// "stage PID, FILE".
func leaseOf(o Object) (lease, error) {
	var l lease
	ip, id, ok1 := strings.Cut(o.Name, " of container ")
	stage, file, ok2 := strings.Cut(o.Detail, ", ")
	pid, err := strconv.Atoi(strings.TrimPrefix(stage, "stage "))
	if !ok1 || !ok2 || err != nil || !strings.HasPrefix(stage, "stage ") {
		return l, fmt.Errorf("refusing to remove lease %q (%s): not a lease as cleanup lists them", o.Name, o.Detail)
	}
	l.IP, l.ID, l.PID, l.file = ip, id, pid, file
	return l, nil
}

// removeLease drops one lease from its file, under the stage's lock,
// after checking again that its stage is dead. A lease already gone (the
// stage reclaimed it) counts as removed.
func removeLease(o Object) error {
	l, err := leaseOf(o)
	if err != nil {
		return err
	}
	dir := filepath.Dir(l.file)
	if !filepath.IsAbs(l.file) || filepath.Base(dir) != "network" || !strings.HasSuffix(l.file, ".json") {
		return fmt.Errorf("refusing to rewrite %s: not of the form <data root>/network/<bridge>.json", l.file)
	}
	if err := checkRealDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("refusing to rewrite %s: %w", l.file, err)
	}
	unlock, err := lockLeases(dir, strings.TrimSuffix(filepath.Base(l.file), ".json"))
	if err != nil {
		return err
	}
	defer unlock()
	return dropLease(l)
}

// lockLeases takes the lock stage 05 takes around its leases file:
// flock(2) LOCK_EX on <dir>/<bridge>.lock, made if missing as the stage
// makes it. The returned function unlocks.
func lockLeases(dir, bridge string) (func(), error) {
	name := filepath.Join(dir, bridge+".lock")
	fd, err := unix.Open(name, unix.O_CREAT|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("flock %s: %w", name, err)
	}
	return func() { unix.Close(fd) }, nil // closing unlocks
}

// dropLease rewrites l's file without l, the other entries kept as they
// are (whatever fields a later stage adds), the way the stage writes it:
// a new file renamed over the old, never half a file.
func dropLease(l lease) error {
	info, err := os.Lstat(l.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || !info.Mode().IsRegular() {
		return fmt.Errorf("refusing to rewrite %s: not a regular file", l.file)
	}
	data, err := os.ReadFile(l.file)
	if err != nil {
		return err
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("read the leases in %s: %w", l.file, err)
	}
	kept := []json.RawMessage{} // [] rather than null, as the stage leaves it
	for _, e := range entries {
		var x lease
		if json.Unmarshal(e, &x) == nil && x.IP == l.IP && x.ID == l.ID && x.PID == l.PID {
			if x.alive() {
				return fmt.Errorf("refusing to drop lease %s of container %s: its stage, process %d, is alive", l.IP, l.ID, l.PID)
			}
			continue
		}
		kept = append(kept, e)
	}
	if len(kept) == len(entries) {
		return nil // gone already: the stage reclaimed it
	}
	out, err := json.MarshalIndent(kept, "", "  ")
	if err == nil {
		err = os.WriteFile(l.file+".new", out, 0o644)
	}
	if err == nil {
		err = os.Rename(l.file+".new", l.file)
	}
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", l.file, err)
	}
	return nil
}
