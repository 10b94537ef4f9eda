package network

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// ensureBridge makes the bridge with the gateway address, once, and sets
// it up. A link of that name that is not this bridge, or a subnet that
// overlaps a route of the host, is refused: the addresses would be
// ambiguous. Called under the leases lock, so two callers never both make
// it.
func ensureBridge(name string, subnet *net.IPNet) error {
	gw := gatewayOf(subnet)
	if link, err := netlink.LinkByName(name); err == nil {
		if !isBridgeWith(link, gw, subnet) {
			return fmt.Errorf("%s exists but is not a bridge with the gateway %s: remove it (minibox cleanup) or choose another bridge or subnet",
				name, &net.IPNet{IP: gw, Mask: subnet.Mask})
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(link); err != nil {
				return fmt.Errorf("ip link set %s up: %w", name, err)
			}
		}
		return nil
	}
	if err := checkNoOverlap(subnet); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	err := netlink.LinkAdd(br)
	if err == nil {
		err = netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: subnet.Mask}})
	}
	if err == nil {
		err = netlink.LinkSetUp(br)
	}
	if err != nil {
		_ = netlink.LinkDel(br) // never half a bridge for the next container
		return fmt.Errorf("make the bridge %s: %w", name, err)
	}
	return nil
}

// isBridgeWith reports whether link is a bridge holding the gateway
// address with the subnet's mask.
func isBridgeWith(link netlink.Link, gw net.IP, subnet *net.IPNet) bool {
	if _, ok := link.(*netlink.Bridge); !ok {
		return false
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(gw) && a.Mask.String() == subnet.Mask.String() {
			return true
		}
	}
	return false
}

// checkNoOverlap refuses a subnet that overlaps a route of the host other
// than the default one (ip route).
func checkNoOverlap(subnet *net.IPNet) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("ip route: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		if r.Dst.Contains(subnet.IP) || subnet.Contains(r.Dst.IP) {
			dev := "?"
			if link, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = link.Attrs().Name
			}
			return fmt.Errorf("subnet %s overlaps the route %s dev %s of this host: choose another subnet", subnet, r.Dst, dev)
		}
	}
	return nil
}

// gatewayOf is the bridge's own address, the subnet's first.
func gatewayOf(subnet *net.IPNet) net.IP {
	ip := append(net.IP(nil), subnet.IP.To4()...)
	ip[3]++
	return ip
}

// macOf is a container's MAC address, made from its IP as docker does
// (02:42 and the four bytes): an address reused by the next container
// keeps its MAC, so the neighbours' ARP caches stay right.
func macOf(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, 0x42, v4[0], v4[1], v4[2], v4[3]}
}
