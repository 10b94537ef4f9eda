package network

// IPAM: which container has which address, in $ROOT/network/<bridge>.json,
// read and rewritten only under flock(2) LOCK_EX of <bridge>.lock. The
// format is stage 05's (a JSON array of {ip, id, pid, ports}), with more
// fields, so stage 05, `minibox cleanup` and this package can share one
// data root and bridge.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A lease is one container's address and published ports, and the process
// whose life it follows: the caller of Setup until Attach, then the
// container's first process.
type lease struct {
	IP    string   `json:"ip"`
	ID    string   `json:"id"`
	PID   int      `json:"pid"`
	Ports []string `json:"ports,omitempty"` // stage 05's keys, for its conflict check
	// Start is the start time of PID (/proc/PID/stat, clock ticks since
	// boot): a PID reused by another process is not the owner.
	Start     uint64 `json:"start,omitempty"`
	Published []Port `json:"published,omitempty"` // what the DNAT rules say
}

// alive reports whether the lease's owner still runs.
func (l lease) alive() bool {
	if l.PID <= 0 || unix.Kill(l.PID, 0) == unix.ESRCH {
		return false
	}
	if l.Start == 0 { // stage 05's lease: the PID is all there is
		return true
	}
	start, err := processStart(l.PID)
	return err == nil && start == l.Start
}

// hostPorts are the host ports a lease holds.
func (l lease) hostPorts() []Port {
	if len(l.Published) > 0 {
		return l.Published
	}
	var out []Port
	for _, k := range l.Ports {
		if p, ok := portOfKey(k); ok {
			out = append(out, p)
		}
	}
	return out
}

// processStart reads field 22 of /proc/PID/stat, the process's start time.
func processStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	if i < 0 || len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64) // field 22 = 3rd + 19
}

// owner is a lease's owner: pid and its start time.
func owner(pid int) (int, uint64, error) {
	start, err := processStart(pid)
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return pid, start, nil
}

func leasesDir(root string) string { return filepath.Join(root, "network") }

// withLeases runs fn on the bridge's leases holding the lock, and saves
// what fn leaves if it returns nil (a new file renamed over the old, so
// never half a file, even for a reader without the lock).
func withLeases(root, bridge string, fn func(*[]lease) error) error {
	dir := leasesDir(root)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	name := filepath.Join(dir, bridge+".lock")
	fd, err := unix.Open(name, unix.O_CREAT|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(fd) // and so unlocked
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("flock %s: %w", name, err)
	}
	file := filepath.Join(dir, bridge+".json")
	list, err := readLeases(file)
	if err != nil {
		return err
	}
	before, _ := json.Marshal(list)
	if err := fn(&list); err != nil {
		return err
	}
	if after, _ := json.Marshal(list); bytes.Equal(before, after) {
		return nil // nothing changed: no write
	}
	return writeLeases(file, list)
}

// readLeases reads a leases file; a missing one holds none.
func readLeases(file string) ([]lease, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return []lease{}, nil
	}
	var list []lease
	if err == nil {
		err = json.Unmarshal(data, &list)
	}
	if err != nil {
		return nil, fmt.Errorf("read the leases in %s: %w", file, err)
	}
	if list == nil {
		list = []lease{}
	}
	return list, nil
}

// writeLeases writes the file whole, synced before the rename: after a
// crash the file is the old one or the new one, never empty.
func writeLeases(file string, list []lease) error {
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := file + ".new" // one writer at a time: under the lock
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write the leases: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write the leases %s: %w", file, err)
	}
	return nil
}

// splitStale removes from list the leases whose owner is gone and
// returns them: their container died without Release (a SIGKILLed
// engine or supervisor), so their address and ports are free again once
// their rules and veth are gone too.
func splitStale(list *[]lease) []lease {
	var stale []lease
	kept := (*list)[:0]
	for _, l := range *list {
		if l.alive() {
			kept = append(kept, l)
		} else {
			stale = append(stale, l)
		}
	}
	*list = kept
	return stale
}

// allocate returns the lowest free address of subnet after the gateway
// (never the network, gateway or broadcast address).
func allocate(list []lease, subnet *net.IPNet) (net.IP, error) {
	taken := map[string]bool{}
	for _, l := range list {
		taken[l.IP] = true
	}
	first := binary.BigEndian.Uint32(subnet.IP.To4())
	ones, bits := subnet.Mask.Size()
	size := uint32(1) << (bits - ones)
	for n := first + 2; n < first+size-1; n++ {
		ip := net.IP(binary.BigEndian.AppendUint32(nil, n))
		if !taken[ip.String()] {
			return ip, nil
		}
	}
	return nil, fmt.Errorf("no free address left in %s (%d leased)", subnet, len(list))
}

// choosePorts checks the wanted host ports against the leases and the
// host, and fills in a free host port where none was given.
func choosePorts(list []lease, want []Port) ([]Port, error) {
	var chosen []Port
	for _, p := range want {
		if p.Proto == "" {
			p.Proto = "tcp"
		}
		if p.HostPort == 0 {
			free, err := freeHostPort(list, chosen, p)
			if err != nil {
				return nil, err
			}
			p.HostPort = free
		} else if err := portFree(list, chosen, p); err != nil {
			return nil, err
		}
		chosen = append(chosen, p)
	}
	return chosen, nil
}

// portFree says why p cannot be published: a container publishes it
// already, this request twice, or a program of the host listens on it
// (whose connections DNAT would steal, silently).
func portFree(list []lease, chosen []Port, p Port) error {
	for _, l := range list {
		for _, q := range l.hostPorts() {
			if p.clashes(q) {
				return fmt.Errorf("host port %s is already published by container %s (%s)", hostSide(p), l.ID, l.IP)
			}
		}
	}
	for _, q := range chosen {
		if p.clashes(q) {
			return fmt.Errorf("host port %s is published twice", hostSide(p))
		}
	}
	return hostPortUnused(p)
}

// hostSide is a port's host side as docker's messages write it.
func hostSide(p Port) string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s:%d/%s", ip, p.HostPort, p.Proto)
}

// hostPortUnused binds the port for a moment: a listener of the host on
// it (or an address that is not the host's) fails here, clearly, rather
// than later, silently.
func hostPortUnused(p Port) error {
	addr := net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort))
	var err error
	if p.Proto == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			l.Close()
		}
	}
	if errors.Is(err, unix.EADDRINUSE) {
		return fmt.Errorf("host port %s is in use by a program of the host", hostSide(p))
	}
	if err != nil {
		return fmt.Errorf("host port %s: %w", hostSide(p), err)
	}
	return nil
}

// freeHostPort picks the lowest port of the ephemeral range
// (net.ipv4.ip_local_port_range, as docker does) that nobody publishes
// or listens on.
func freeHostPort(list []lease, chosen []Port, p Port) (int, error) {
	lo, hi := 32768, 60999
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			a, err1 := strconv.Atoi(f[0])
			b, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && a <= b {
				lo, hi = a, b
			}
		}
	}
	p.HostPort = 0 // an address that is not the host's fails every port: say so once
	if err := hostPortUnused(p); err != nil {
		return 0, err
	}
	for n := lo; n <= hi; n++ {
		p.HostPort = n
		if portFree(list, chosen, p) == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("publish %d/%s: no free host port in %d-%d", p.ContainerPort, p.Proto, lo, hi)
}
