package runtime

// Device control on cgroup v2.
//
// cgroup v1 has a devices controller: the runtime writes rules into
// devices.allow and devices.deny (cgroups.go, deviceRules). cgroup v2 has
// no such files. Its "device controller" (Documentation/admin-guide/
// cgroup-v2.rst, "Device controller") is a small eBPF program of type
// BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup: the kernel runs it
// on every mknod and every open of a device node by a process of the
// group, with a context
//
//	struct bpf_cgroup_dev_ctx {
//		__u32 access_type; // (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
//		__u32 major;
//		__u32 minor;
//	};
//
// and refuses the access (EPERM) when it returns 0. runc builds the program
// with cilium/ebpf (libcontainer/cgroups/devices/devicefilter.go, after
// crun's ebpf.c); the program is so small that minibox writes its
// instructions by hand, one 8-byte struct bpf_insn each, and loads and
// attaches it with two bpf(2) calls.
//
// The program is the rule list of deviceRules (everything denied, then
// linux.resources.devices in order, then the default devices), compiled
// so that the LAST matching rule decides, as the OCI spec and v1's
// devices.allow/deny do: the rules are emitted from last to first, and
// the first block that matches in the program returns that rule's answer.
// No rule matching means deny. A rule that matches everything (type a,
// no major, minor or access restriction) hides every rule before it, so
// emission stops there (the verifier refuses unreachable instructions).
//
// Lifetime: after BPF_PROG_ATTACH the cgroup holds the program; the loader's
// file descriptor is closed at once. When the cgroup is removed (rmdir), the
// kernel detaches and frees every program attached to it, so deleting the
// container's cgroup removes the program too: nothing else to clean up.

import (
	"encoding/binary"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// bpfInsn is struct bpf_insn: opcode, destination and source register
// (4 bits each), a 16-bit jump offset and a 32-bit immediate.
type bpfInsn struct {
	code     uint8
	dst, src uint8
	off      int16
	imm      int32
}

// The opcodes the program uses (include/uapi/linux/bpf.h, bpf_common.h).
const (
	opLdxW    = unix.BPF_LDX | unix.BPF_MEM | unix.BPF_W // dst = *(u32 *)(src + off)
	opAnd32K  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K // dst &= imm (32 bit)
	opRsh32K  = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K // dst >>= imm (32 bit)
	opMov32X  = unix.BPF_ALU | unix.BPF_MOV | unix.BPF_X // dst = src (32 bit)
	opMov64K  = unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K
	opJne32K  = unix.BPF_JMP32 | unix.BPF_JNE | unix.BPF_K // if dst != imm: pc += off
	opJne32X  = unix.BPF_JMP32 | unix.BPF_JNE | unix.BPF_X // if dst != src: pc += off
	opExit    = unix.BPF_JMP | unix.BPF_EXIT
	regCtx    = 1 // R1: the context on entry, later a scratch register
	regType   = 2 // R2: BPF_DEVCG_DEV_BLOCK or _CHAR
	regAccess = 3 // R3: BPF_DEVCG_ACC_* bits asked for
	regMajor  = 4
	regMinor  = 5
	regRet    = 0 // R0: the answer, 1 allow, 0 deny
)

// deviceRule is one linux.resources.devices entry in the program's terms:
// kind is 0 for any type; access is the BPF_DEVCG_ACC_* bits (all three:
// no restriction); major and minor are -1 for any.
type deviceRule struct {
	allow        bool
	kind         int32
	major, minor int64
	access       int32
}

const accessAll = unix.BPF_DEVCG_ACC_MKNOD | unix.BPF_DEVCG_ACC_READ | unix.BPF_DEVCG_ACC_WRITE

// matchesAll reports whether r matches every device and access.
func (r deviceRule) matchesAll() bool {
	return r.kind == 0 && r.major < 0 && r.minor < 0 && r.access == accessAll
}

// v2DeviceRules is the rule list the program enforces, in order: the same
// as v1's (deviceRules), so both cgroup versions allow the same devices.
func v2DeviceRules(devices []specs.LinuxDeviceCgroup) ([]deviceRule, error) {
	var out []deviceRule
	for _, s := range deviceRules(devices) {
		r, err := parseDeviceRule(s.value)
		if err != nil {
			return nil, err
		}
		r.allow = s.file == "devices.allow"
		out = append(out, r)
	}
	return out, nil
}

// parseDeviceRule reads a v1 rule, "a" or "TYPE MAJOR:MINOR ACCESS" with *
// for any number (the form deviceRules writes).
func parseDeviceRule(s string) (deviceRule, error) {
	r := deviceRule{major: -1, minor: -1, access: accessAll}
	f := strings.Fields(s)
	if len(f) == 1 && f[0] == "a" {
		return r, nil
	}
	if len(f) < 2 || len(f) > 3 {
		return r, fmt.Errorf("linux.resources.devices: bad rule %q", s)
	}
	switch f[0] {
	case "a":
	case "c":
		r.kind = unix.BPF_DEVCG_DEV_CHAR
	case "b":
		r.kind = unix.BPF_DEVCG_DEV_BLOCK
	default:
		return r, fmt.Errorf("linux.resources.devices: rule %q: type must be a, b or c", s)
	}
	major, minor, ok := strings.Cut(f[1], ":")
	if !ok {
		return r, fmt.Errorf("linux.resources.devices: rule %q: want MAJOR:MINOR", s)
	}
	var err error
	if r.major, err = deviceNumber(major); err != nil {
		return r, fmt.Errorf("linux.resources.devices: rule %q: %w", s, err)
	}
	if r.minor, err = deviceNumber(minor); err != nil {
		return r, fmt.Errorf("linux.resources.devices: rule %q: %w", s, err)
	}
	if len(f) == 3 && f[2] != "" { // no access given: all of them, as in v1
		r.access = 0
		for _, c := range f[2] {
			switch c {
			case 'r':
				r.access |= unix.BPF_DEVCG_ACC_READ
			case 'w':
				r.access |= unix.BPF_DEVCG_ACC_WRITE
			case 'm':
				r.access |= unix.BPF_DEVCG_ACC_MKNOD
			default:
				return r, fmt.Errorf("linux.resources.devices: rule %q: access is made of r, w and m", s)
			}
		}
	}
	return r, nil
}

// deviceNumber is a major or minor number, -1 for "*".
func deviceNumber(s string) (int64, error) {
	if s == "*" {
		return -1, nil
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n < 0 || n > 0xffffffff {
		return 0, fmt.Errorf("bad device number %q", s)
	}
	return n, nil
}

// deviceProgram compiles rules into the program's instructions.
func deviceProgram(rules []deviceRule) []bpfInsn {
	// Prologue: split the context into R2..R5.
	prog := []bpfInsn{
		{code: opLdxW, dst: regType, src: regCtx, off: 0},
		{code: opAnd32K, dst: regType, imm: 0xffff},
		{code: opLdxW, dst: regAccess, src: regCtx, off: 0},
		{code: opRsh32K, dst: regAccess, imm: 16},
		{code: opLdxW, dst: regMajor, src: regCtx, off: 4},
		{code: opLdxW, dst: regMinor, src: regCtx, off: 8},
	}
	for i := len(rules) - 1; i >= 0; i-- {
		prog = append(prog, ruleBlock(rules[i])...)
		if rules[i].matchesAll() {
			return prog // it always returns: earlier rules can never decide
		}
	}
	return append(prog, // no rule matched: deny
		bpfInsn{code: opMov64K, dst: regRet, imm: 0},
		bpfInsn{code: opExit},
	)
}

// ruleBlock is one rule: a test per restriction, each jumping past the
// block when it does not hold, then "return allow".
func ruleBlock(r deviceRule) []bpfInsn {
	var tests [][]bpfInsn
	if r.kind != 0 {
		tests = append(tests, []bpfInsn{{code: opJne32K, dst: regType, imm: r.kind}})
	}
	if r.access != accessAll {
		// Every access asked for must be in the rule: (R3 & access) == R3.
		tests = append(tests, []bpfInsn{
			{code: opMov32X, dst: regCtx, src: regAccess},
			{code: opAnd32K, dst: regCtx, imm: r.access},
			{code: opJne32X, dst: regCtx, src: regAccess},
		})
	}
	if r.major >= 0 {
		tests = append(tests, []bpfInsn{{code: opJne32K, dst: regMajor, imm: int32(uint32(r.major))}})
	}
	if r.minor >= 0 {
		tests = append(tests, []bpfInsn{{code: opJne32K, dst: regMinor, imm: int32(uint32(r.minor))}})
	}
	var block []bpfInsn
	for _, t := range tests {
		block = append(block, t...)
	}
	ret := int32(0)
	if r.allow {
		ret = 1
	}
	block = append(block, bpfInsn{code: opMov64K, dst: regRet, imm: ret}, bpfInsn{code: opExit})
	// Jumps are relative to the next instruction: each test's jump goes
	// to the end of the block.
	for pc := range block {
		if c := block[pc].code; c == opJne32K || c == opJne32X {
			block[pc].off = int16(len(block) - pc - 1)
		}
	}
	return block
}

// encode is the program as the kernel reads it: struct bpf_insn, little
// endian (this code is linux/amd64 and arm64 only in practice; both are).
func encode(prog []bpfInsn) []byte {
	out := make([]byte, 0, 8*len(prog))
	for _, in := range prog {
		var b [8]byte
		b[0] = in.code
		b[1] = in.dst&0x0f | in.src<<4
		binary.LittleEndian.PutUint16(b[2:], uint16(in.off))
		binary.LittleEndian.PutUint32(b[4:], uint32(in.imm))
		out = append(out, b[:]...)
	}
	return out
}

// bpfProgLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// expected_attach_type.
type bpfProgLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
}

// bpfProgAttachAttr is the BPF_PROG_ATTACH part of union bpf_attr.
type bpfProgAttachAttr struct {
	targetFd     uint32
	attachBpfFd  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBpfFd uint32
}

// bpf is the bpf(2) system call (no wrapper in x/sys/unix).
func bpf(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// loadDeviceProgram loads the program and returns its file descriptor.
// The verifier's log is asked for only when loading fails, to say why.
func loadDeviceProgram(prog []bpfInsn) (int, error) {
	code := encode(prog)
	license := []byte("Apache-2.0\x00")
	attr := bpfProgLoadAttr{
		progType:           unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:            uint32(len(prog)),
		insns:              uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		expectedAttachType: unix.BPF_CGROUP_DEVICE,
	}
	copy(attr.progName[:], "minibox_devices")
	// The kernel reads code and license through the addresses in attr:
	// keep them alive until it has.
	defer goruntime.KeepAlive(code)
	defer goruntime.KeepAlive(license)
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == nil {
		return int(fd), nil
	}
	if errors.Is(err, unix.EPERM) {
		return -1, fmt.Errorf("bpf(BPF_PROG_LOAD) of the cgroup v2 device program: %w (it needs CAP_SYS_ADMIN or CAP_BPF)", err)
	}
	log := make([]byte, 64<<10)
	attr.logLevel, attr.logSize = 1, uint32(len(log))
	attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
	defer goruntime.KeepAlive(log)
	if fd, err2 := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err2 == nil {
		return int(fd), nil // (not expected: it failed a moment ago)
	}
	return -1, fmt.Errorf("bpf(BPF_PROG_LOAD) of the cgroup v2 device program: %w; the verifier said: %s",
		err, strings.TrimSpace(string(log[:clen(log)])))
}

// clen is the length of the NUL-terminated string in b.
func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// applyDevicesV2 attaches the device program for devices to the cgroup
// directory dir. BPF_F_ALLOW_MULTI: programs the host attached to the
// ancestors (systemd does) keep running too; all of them must allow.
func applyDevicesV2(dir string, devices []specs.LinuxDeviceCgroup) error {
	rules, err := v2DeviceRules(devices)
	if err != nil {
		return err
	}
	progFd, err := loadDeviceProgram(deviceProgram(rules))
	if err != nil {
		return err
	}
	// The cgroup keeps the program once attached: our descriptor goes.
	defer unix.Close(progFd)
	cgFd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer unix.Close(cgFd)
	attr := bpfProgAttachAttr{
		targetFd:    uint32(cgFd),
		attachBpfFd: uint32(progFd),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("bpf(BPF_PROG_ATTACH) of the device program to %s: %w", dir, err)
	}
	return nil
}
