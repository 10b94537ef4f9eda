package runtime

import (
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The cgroup v2 device program decides as the rule list says, the last
// matching rule winning: checked by running the instructions deviceProgram
// emits in a small interpreter of the opcodes it uses, for many accesses,
// against the rules read directly. (The kernel test, TestDeviceAccess,
// runs the program in the kernel; the kernel cannot test-run this program
// type, so the decisions of many rules are checked here.)
func TestDeviceProgramLastMatchWins(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	cases := map[string][]specs.LinuxDeviceCgroup{
		"defaults only": nil,
		"allow then narrower deny": {
			{Allow: true, Type: "b", Major: i64(8), Access: "rw"},
			{Allow: false, Type: "b", Major: i64(8), Minor: i64(0), Access: "w"},
		},
		"deny then allow": {
			{Allow: false, Type: "c", Major: i64(10), Minor: i64(200)},
			{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "r"},
		},
		"allow everything": {{Allow: true, Access: "rwm"}},
		"allow all, then deny block": {
			{Allow: true},
			{Allow: false, Type: "b"},
		},
		"deny all at the end": {
			{Allow: true, Type: "c", Major: i64(4)},
			{Allow: false},
		},
	}
	kinds := []int32{unix.BPF_DEVCG_DEV_BLOCK, unix.BPF_DEVCG_DEV_CHAR}
	accesses := []int32{unix.BPF_DEVCG_ACC_READ, unix.BPF_DEVCG_ACC_WRITE, unix.BPF_DEVCG_ACC_MKNOD,
		unix.BPF_DEVCG_ACC_READ | unix.BPF_DEVCG_ACC_WRITE}
	devices := [][2]uint32{{1, 3}, {1, 9}, {4, 1}, {5, 2}, {8, 0}, {8, 1}, {10, 200}, {136, 7}, {254, 0}}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			rules, err := v2DeviceRules(spec)
			require.NoError(t, err)
			prog := deviceProgram(rules)
			require.Less(t, len(prog), 4096, "the kernel's limit for unprivileged programs")
			for _, k := range kinds {
				for _, a := range accesses {
					for _, d := range devices {
						got, err := runDeviceProgram(prog, uint32(a)<<16|uint32(k), d[0], d[1])
						require.NoError(t, err)
						want := lastMatch(rules, k, a, d[0], d[1])
						assert.Equal(t, want, got, "type %d access %d device %d:%d", k, a, d[0], d[1])
					}
				}
			}
		})
	}
}

// Spot checks of the rule semantics the program must implement, so that
// lastMatch (the oracle above) is itself checked.
func TestDeviceRuleSemantics(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	rules, err := v2DeviceRules([]specs.LinuxDeviceCgroup{
		{Allow: true, Type: "b", Major: i64(8), Access: "rw"},
		{Allow: false, Type: "b", Major: i64(8), Minor: i64(0), Access: "w"},
	})
	require.NoError(t, err)
	prog := deviceProgram(rules)
	const blk, chr = unix.BPF_DEVCG_DEV_BLOCK, unix.BPF_DEVCG_DEV_CHAR
	const r, w, m = unix.BPF_DEVCG_ACC_READ, unix.BPF_DEVCG_ACC_WRITE, unix.BPF_DEVCG_ACC_MKNOD
	for _, c := range []struct {
		kind, access int32
		major, minor uint32
		allow        bool
	}{
		{blk, r, 8, 0, true},     // the first rule
		{blk, w, 8, 0, false},    // the later deny wins
		{blk, w, 8, 1, true},     // the deny is for 8:0 only
		{blk, r | w, 8, 0, true}, // a deny for w alone does not match rw (runc's rule too)
		{blk, r, 9, 0, false},    // no rule: denied
		{blk, m, 9, 0, true},     // mknod of anything (default)
		{chr, r | w, 1, 3, true}, // /dev/null (default)
		{chr, r, 1, 1, false},    // /dev/mem: no rule
		{chr, w, 136, 3, true},   // a pty (default c 136:*)
		{chr, r, 10, 200, false}, // /dev/net/tun: not a default
	} {
		got, err := runDeviceProgram(prog, uint32(c.access)<<16|uint32(c.kind), c.major, c.minor)
		require.NoError(t, err)
		assert.Equal(t, c.allow, got, "%+v", c)
	}

	_, err = parseDeviceRule("x 1:2 r")
	assert.ErrorContains(t, err, "type must be a, b or c")
	_, err = parseDeviceRule("c 1:2 q")
	assert.ErrorContains(t, err, "access is made of r, w and m")
}

// lastMatch is the rule list's answer read directly: the last rule that
// matches decides; none means deny.
func lastMatch(rules []deviceRule, kind, access int32, major, minor uint32) bool {
	allow := false
	for _, r := range rules {
		if (r.kind == 0 || r.kind == kind) && access&r.access == access &&
			(r.major < 0 || uint32(r.major) == major) && (r.minor < 0 || uint32(r.minor) == minor) {
			allow = r.allow
		}
	}
	return allow
}

// runDeviceProgram interprets prog with the context (access_type, major,
// minor) and returns its answer. It knows the opcodes deviceProgram uses,
// and fails on any other, on a jump out of the program and on falling off
// its end, as the kernel's verifier would refuse them.
func runDeviceProgram(prog []bpfInsn, accessType, major, minor uint32) (bool, error) {
	ctx := [3]uint32{accessType, major, minor}
	var reg [11]uint64
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.code {
		case opLdxW:
			if in.src != regCtx || in.off%4 != 0 || in.off < 0 || in.off > 8 {
				return false, fmt.Errorf("pc %d: load from r%d%+d: not the context", pc, in.src, in.off)
			}
			reg[in.dst] = uint64(ctx[in.off/4])
		case opAnd32K:
			reg[in.dst] = uint64(uint32(reg[in.dst]) & uint32(in.imm))
		case opRsh32K:
			reg[in.dst] = uint64(uint32(reg[in.dst]) >> uint32(in.imm))
		case opMov32X:
			reg[in.dst] = uint64(uint32(reg[in.src]))
		case opMov64K:
			reg[in.dst] = uint64(int64(in.imm))
		case opJne32K, opJne32X:
			other := uint32(in.imm)
			if in.code == opJne32X {
				other = uint32(reg[in.src])
			}
			if uint32(reg[in.dst]) != other {
				pc += int(in.off)
				if pc+1 > len(prog) || in.off < 0 {
					return false, fmt.Errorf("pc %d: jump out of the program", pc)
				}
			}
		case opExit:
			return reg[regRet] == 1, nil
		default:
			return false, fmt.Errorf("pc %d: unexpected opcode %#x", pc, in.code)
		}
	}
	return false, fmt.Errorf("the program ran off its end")
}

// The encoding is struct bpf_insn's: registers in one byte (dst low),
// offset and immediate little endian.
func TestEncodeInstruction(t *testing.T) {
	got := encode([]bpfInsn{{code: opJne32K, dst: regMajor, src: 0, off: 3, imm: 200}, {code: opMov32X, dst: 1, src: 3}})
	assert.Equal(t, []byte{0x56, 0x04, 3, 0, 200, 0, 0, 0, 0xbc, 0x31, 0, 0, 0, 0, 0, 0}, got)
}
