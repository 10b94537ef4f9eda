package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
)

// Info is one network as `minibox network ls` shows it (docker's
// columns), with what minibox knows of it.
type Info struct {
	ID         string `json:"id"` // 64 hex digits, stable: made from the name
	Name       string `json:"name"`
	Driver     string `json:"driver"` // bridge, host, null
	Scope      string `json:"scope"`  // always local
	Bridge     string `json:"bridge,omitempty"`
	Subnet     string `json:"subnet,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	Containers int    `json:"containers"` // live leases
}

// List returns the networks a container can join, sorted by name, as
// docker's network ls: "bridge" (minibox0), "host" and "none", and a
// network of its own for every other bridge with leases in root.
func List(root string) ([]Info, error) {
	out := []Info{
		bridgeInfo(root, "bridge", DefaultBridge),
		{ID: networkID("host"), Name: "host", Driver: "host", Scope: "local"},
		{ID: networkID("none"), Name: "none", Driver: "null", Scope: "local"},
	}
	files, err := filepath.Glob(filepath.Join(leasesDir(root), "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if info, err := os.Lstat(f); err != nil || !info.Mode().IsRegular() {
			continue
		}
		if br := strings.TrimSuffix(filepath.Base(f), ".json"); br != DefaultBridge {
			out = append(out, bridgeInfo(root, br, br))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	var errs []error
	for i := range out {
		if out[i].Driver == "bridge" {
			n, err := liveLeases(root, out[i].Bridge)
			out[i].Containers = n
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// bridgeInfo describes a bridge network: the subnet of the bridge's
// address if it exists, else the default one Setup would use.
func bridgeInfo(root, name, bridge string) Info {
	info := Info{ID: networkID(name), Name: name, Driver: "bridge", Scope: "local", Bridge: bridge}
	if bridge == DefaultBridge {
		_, subnet, _ := net.ParseCIDR(DefaultSubnet)
		info.Subnet, info.Gateway = subnet.String(), gatewayOf(subnet).String()
	}
	if link, err := netlink.LinkByName(bridge); err == nil {
		if addrs, err := netlink.AddrList(link, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
			a := addrs[0].IPNet
			info.Subnet = (&net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}).String()
			info.Gateway = a.IP.String()
		}
	}
	return info
}

// networkID is a stable ID for a network name, docker-like: 64 hex digits.
func networkID(name string) string {
	sum := sha256.Sum256([]byte("minibox network " + name))
	return hex.EncodeToString(sum[:])
}

// liveLeases counts the leases of a bridge whose owner is alive. The
// file is read without the lock: it is only ever replaced whole.
func liveLeases(root, bridge string) (int, error) {
	list, err := readLeases(filepath.Join(leasesDir(root), bridge+".json"))
	if err != nil {
		return 0, fmt.Errorf("network %s: %w", bridge, err)
	}
	n := 0
	for _, l := range list {
		if l.alive() {
			n++
		}
	}
	return n, nil
}
