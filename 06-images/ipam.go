package main

// IPAM, IP address management: which container has which address. Never a
// random pick: the lowest free address of the subnet, recorded in a file
// under a lock, so twenty containers starting at once get twenty different
// addresses, and released when the container ends.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// A lease is one container's address, and the host ports it publishes.
type lease struct {
	IP    string   `json:"ip"`
	ID    string   `json:"id"`
	PID   int      `json:"pid"` // the stage's: a lease whose stage is gone is free again
	Ports []string `json:"ports,omitempty"`
}

// withLeases runs fn on the bridge's leases, $ROOT/network/<bridge>.json,
// holding an exclusive lock on <bridge>.lock (flock(2)) the whole time,
// and saves what fn leaves.
func withLeases(root, bridge string, fn func(*[]lease) error) error {
	dir := filepath.Join(root, "network")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, bridge+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close() // and so unlocked
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("flock %s: %w", lock.Name(), err)
	}
	file := filepath.Join(dir, bridge+".json")
	var list []lease
	data, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(data, &list)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read the leases in %s: %w", file, err)
	}
	// A stage killed by SIGKILL left its lease: kill -0 says it is gone.
	list = slices.DeleteFunc(list, func(l lease) bool { return unix.Kill(l.PID, 0) == unix.ESRCH })
	if err := fn(&list); err != nil {
		return err
	}
	if data, err = json.MarshalIndent(list, "", "  "); err == nil {
		err = os.WriteFile(file+".new", data, 0o644)
	}
	if err == nil {
		err = os.Rename(file+".new", file) // never half a file
	}
	return err
}

// allocate leases the lowest free address after the gateway for
// container id, refusing ports another container publishes already.
func allocate(list *[]lease, subnet *net.IPNet, id string, ports []string) (net.IP, error) {
	taken := map[string]bool{}
	for _, l := range *list {
		taken[l.IP] = true
		for _, p := range ports {
			if slices.Contains(l.Ports, p) {
				return nil, fmt.Errorf("host port %s is published already, by container %s", p, l.ID)
			}
		}
	}
	first := binary.BigEndian.Uint32(subnet.IP.To4())
	ones, bits := subnet.Mask.Size()
	for n := first + 2; n < first+(1<<(bits-ones))-1; n++ { // .1 is the gateway; the last, broadcast
		ip := binary.BigEndian.AppendUint32(nil, n)
		if !taken[net.IP(ip).String()] {
			*list = append(*list, lease{IP: net.IP(ip).String(), ID: id, PID: os.Getpid(), Ports: ports})
			narrate("# lease %s for %s   (ipam.go: %s)", net.IP(ip), id, "network/*.json under flock")
			return ip, nil
		}
	}
	return nil, fmt.Errorf("no free address left in %s", subnet)
}
