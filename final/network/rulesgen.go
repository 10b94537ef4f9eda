package network

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Checking the bridge's shared rules costs each container's start an
// iptables-restore (~2 ms, 6–7 ms on a slow machine), yet they change
// only when someone changes the firewall. nf_tables counts the changes:
// every committed change to a network namespace's ruleset moves its
// generation on (nft's NFT_MSG_GETGEN, the number `nft monitor` reports
// with each new generation), and a check, which changes nothing, does
// not. So once the rules were all there at generation N, they still are
// while the generation is N: a Setup that finds the stamp of its last
// good check unchanged skips the check. The stamp names the boot, the
// network namespace (generations are counted per namespace, from 1) and
// the rules checked (another build's, or another subnet's, are others).
// A container that publishes ports adds and deletes rules, so after one
// the next Setup checks again.

// rulesStamp says which state of the ruleset a check of rules sees: ""
// if no stamp can be trusted. That is when iptables is the legacy kind
// (x_tables: its changes do not move nf_tables' generation; a legacy
// table is listed in ip_tables_names once it is used) or when the kernel
// cannot tell. All of it is read from the calling thread's network
// namespace, the one iptables-restore, started from it, works in.
func rulesStamp(rules []rule) string {
	goruntime.LockOSThread() // /proc/thread-self: this thread's namespace
	defer goruntime.UnlockOSThread()
	if legacy, err := os.ReadFile("/proc/thread-self/net/ip_tables_names"); err == nil && len(legacy) > 0 {
		return ""
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	cookie, err := netnsCookie()
	if err != nil {
		return ""
	}
	gen, err := nftGeneration()
	if err != nil {
		return ""
	}
	var checked []string
	for _, r := range rules {
		checked = append(checked, r.table+" "+r.String())
	}
	digest := sha256.Sum256([]byte(strings.Join(checked, "\n")))
	return fmt.Sprintf("boot %s netns %d nf_tables generation %d rules %x\n", strings.TrimSpace(string(boot)), cookie, gen, digest[:8])
}

// netnsCookie is this network namespace's cookie, a number never reused
// within a boot (getsockopt SO_NETNS_COOKIE on any socket of it).
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE) // Linux 5.14
}

// nftGeneration asks the kernel for the ruleset's generation: a
// NFT_MSG_GETGEN request on a NETLINK_NETFILTER socket, answered by
// NFT_MSG_NEWGEN with the generation in NFTA_GEN_ID (big-endian).
func nftGeneration() (uint32, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN, 0)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC})
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	if len(msgs) != 1 || len(msgs[0]) < nl.SizeofNfgenmsg {
		return 0, fmt.Errorf("nf_tables generation: %d answers", len(msgs))
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][nl.SizeofNfgenmsg:])
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.NFTA_GEN_ID && len(a.Value) == 4 {
			return binary.BigEndian.Uint32(a.Value), nil
		}
	}
	return 0, fmt.Errorf("nf_tables generation: no NFTA_GEN_ID in the answer")
}

// stampUnchanged reports whether file holds stamp, a stamp that can be
// trusted.
func stampUnchanged(file, stamp string) bool {
	data, err := os.ReadFile(file)
	return err == nil && stamp != "" && string(data) == stamp
}

// writeStamp keeps stamp for the next Setup. One short write: a file cut
// short by a crash holds no stamp, and only costs a check.
func writeStamp(file, stamp string) {
	if stamp != "" {
		_ = os.WriteFile(file, []byte(stamp), 0o644)
	}
}
