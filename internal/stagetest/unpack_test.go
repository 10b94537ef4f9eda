package stagetest

// Stage 04 unpacks layer tars into its layer store, and a layer tar is
// input from whoever published the image: every anchor project has shipped
// an extractor that a crafted tar walked out of (`../` names, a symlink
// then a file written through it, a hard link to a host file). These tests
// write such tars themselves, with archive/tar, run
//
//	stage04 run --layer EVIL.tar ROOTFS -- true
//
// with a throw-away MINIBOX_ROOT, and check that the stage refuses, names
// the entry, and wrote nothing: not outside the layer store (sentinel
// files planted around it, /tmp and / searched for the names the tars try
// to create, /etc/passwd's inode), not a half layer inside it, no
// container directory, no mount. Positive controls check that the same
// code accepts a well-formed layer (links, whiteouts, an opaque directory,
// gzip) and that the container sees the tree those mean.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A tarEntry is one member of a generated tar: its header and, for a
// regular file, its content.
type tarEntry struct {
	hdr  tar.Header
	body string
}

// tarModTime is every generated entry's mtime: fixed, so a tar's bytes (and
// its sha256, the layer's name in the store) are the same on every run.
var tarModTime = time.Unix(1700000000, 0)

func tarFile(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: tarModTime}, body: body}
}

func tarDir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: tarModTime}}
}

func tarSymlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: tarModTime}}
}

func tarHardlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: tarModTime}}
}

func tarNode(name string, typ byte, major, minor int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o644, Devmajor: major, Devminor: minor, ModTime: tarModTime}}
}

// withPAX adds PAX records to an entry: how GNU tar and Docker carry
// extended attributes (SCHILY.xattr.NAME).
func withPAX(e tarEntry, records map[string]string) tarEntry {
	e.hdr.PAXRecords = records
	e.hdr.Format = tar.FormatPAX
	return e
}

// tarBytes writes entries as a complete tar archive.
func tarBytes(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		require.NoError(t, tw.WriteHeader(&hdr), "header %s", hdr.Name)
		_, err := io.WriteString(tw, e.body)
		require.NoError(t, err, "body of %s", hdr.Name)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func gzipBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// gunzipErr is what reading all of a gzip stream ends with: the corrupt
// fixtures check with it that they really are corrupt, so that a stage
// accepting them fails the test for the right reason.
func gunzipErr(data []byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, zr)
	return err
}

// A bigBody is a file content long enough that cutting the tar in its
// middle leaves a member shorter than its header says, and compressible
// (so its gzip stream has Huffman-coded blocks a flipped byte breaks).
var bigBody = strings.Repeat("minibox layer data, line after line\n", 300)

// An unpackBox is one malicious run's world: a temp dir holding the data
// root (root), the tar, and sentinels the tars aim at (outside/secret).
// The layer lands in root/layers/SHA, so from there "../../.." is dir.
type unpackBox struct {
	dir     string // the temp dir
	root    string // MINIBOX_ROOT: dir/root
	outside string // dir/outside, a directory of sentinels
	token   string // in every name a tar tries to create outside
}

func newUnpackBox(t *testing.T, token string) *unpackBox {
	t.Helper()
	dir := t.TempDir()
	b := &unpackBox{dir: dir, root: filepath.Join(dir, "root"), outside: filepath.Join(dir, "outside"), token: token}
	require.NoError(t, os.Mkdir(b.outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b.outside, "secret"), []byte("sentinel\n"), 0o644))
	return b
}

// env is the environment a stage runs with: its data root in the box.
// Appended last, it wins over any MINIBOX_ROOT already in stageEnv's list
// (os/exec keeps the last value of a duplicate).
func (b *unpackBox) env() []string {
	return stageEnv("MINIBOX_ROOT=" + b.root)
}

// An unsafeTar is one malicious archive and what the refusal must say.
type unsafeTar struct {
	name string
	// tar returns the file's bytes; b gives the absolute paths the tar
	// aims at and the token its payload names carry.
	tar func(t *testing.T, b *unpackBox) []byte
	// mention: stderr must contain at least one of these (the entry's
	// name, or its link target, or for a broken archive what is wrong).
	mention func(b *unpackBox) []string
	// mayAccept: the tar means something harmless (a later entry
	// replaces an earlier one, as with GNU tar and Docker), so the stage
	// may unpack it or refuse it; either way nothing outside the layer may
	// change, and if it unpacks it, accepted checks the layer's directory.
	mayAccept bool
	accepted  func(t *testing.T, layer string)
}

// mentions is a mention function for fixed strings.
func mentions(s ...string) func(*unpackBox) []string {
	return func(*unpackBox) []string { return s }
}

// brokenArchive is what a refusal of a cut or corrupt archive may say.
var brokenArchive = mentions("truncated", "unexpected EOF", "corrupt", "gzip", "invalid", "checksum")

// unsafeTars is the table of malicious archives. Each payload name has
// the box's token in it, so a file that does escape is found by name in
// /tmp, / and the box.
func unsafeTars() []unsafeTar {
	tok := func(b *unpackBox, s string) string { return b.token + "-" + s }
	return []unsafeTar{
		{
			name: "dotdot",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile("../../"+tok(b, "dotdot"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{"../../" + tok(b, "dotdot")} },
		},
		{
			// Enough ".." to reach / from anywhere: lands in /tmp if followed.
			name: "dotdot-to-host-tmp",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile(strings.Repeat("../", 30)+"tmp/"+tok(b, "deep"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{"tmp/" + tok(b, "deep")} },
		},
		{
			name: "dotdot-inside-name",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("a/"), tarFile("a/../../../"+tok(b, "inner"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{"a/../../../" + tok(b, "inner")} },
		},
		{
			// Over 100 bytes: the name travels in a PAX record, not the header.
			name: "dotdot-long-pax-name",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile(strings.Repeat("d/", 60)+strings.Repeat("../", 63)+tok(b, "long"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{tok(b, "long")} },
		},
		{
			name: "absolute-name",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile("/tmp/"+tok(b, "abs"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{"/tmp/" + tok(b, "abs")} },
		},
		{
			name: "absolute-name-into-box",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile(filepath.Join(b.outside, tok(b, "abs")), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{filepath.Join(b.outside, tok(b, "abs"))} },
		},
		{
			// A hard link to a file outside, then a file of the same name:
			// an extractor that opens the existing name writes the sentinel.
			name: "hardlink-dotdot-then-write",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t,
					tarHardlink("escape-link", "../../../outside/secret"),
					tarFile("escape-link", "pwned\n"))
			},
			mention: mentions("escape-link", "../../../outside/secret"),
		},
		{
			name: "hardlink-dotdot-short",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarHardlink("up-link", "../x"))
			},
			mention: mentions("up-link", "../x"),
		},
		{
			// Its header copies /etc/passwd's mode, owner and mtime, so a
			// broken stage that links it and then applies the header's
			// metadata to the link changes nothing on the host.
			name: "hardlink-etc-passwd",
			tar: func(t *testing.T, b *unpackBox) []byte {
				e := tarHardlink("passwd-link", "/etc/passwd")
				var st unix.Stat_t
				require.NoError(t, unix.Stat("/etc/passwd", &st))
				e.hdr.Mode = int64(st.Mode & 0o7777)
				e.hdr.Uid, e.hdr.Gid = int(st.Uid), int(st.Gid)
				e.hdr.ModTime = time.Unix(st.Mtim.Unix())
				return tarBytes(t, e)
			},
			mention: mentions("passwd-link", "/etc/passwd"),
		},
		{
			// The link's target goes through an (allowed) absolute symlink:
			// resolved on the host, it is the sentinel.
			name: "hardlink-through-symlink-then-write",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t,
					tarSymlink("out", b.outside),
					tarHardlink("via-link", "out/secret"),
					tarFile("via-link", "pwned\n"))
			},
			mention: mentions("via-link", "out/secret"),
		},
		{
			name: "symlink-climbs-out",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarSymlink("climb", "../../.."))
			},
			mention: mentions("climb"),
		},
		{
			name: "symlink-climbs-out-then-write",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarSymlink("climb", "../../.."), tarFile("climb/"+tok(b, "climb"), "pwned\n"))
			},
			mention: mentions("climb"),
		},
		{
			// Inside a subdirectory, "../x" is fine; one more ".." is not.
			name: "nested-symlink-climbs-out",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("sub/"), tarDir("sub/deep/"), tarSymlink("sub/deep/climb", "../../../x"))
			},
			mention: mentions("sub/deep/climb"),
		},
		{
			// The absolute symlink is allowed (it resolves inside the
			// container); writing through it on the host is not.
			name: "absolute-symlink-to-host-tmp-then-write",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarSymlink("d", "/tmp"), tarFile("d/"+tok(b, "pwned"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{"d/" + tok(b, "pwned")} },
		},
		{
			name: "absolute-symlink-to-sentinel-then-overwrite",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarSymlink("d", b.outside), tarFile("d/secret", "pwned\n"))
			},
			mention: mentions("d/secret"),
		},
		{
			// The spec's rule is "no symlink on an entry's parent path", so
			// even a symlink that stays inside the layer is refused there.
			name: "inside-symlink-then-write",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("real/"), tarSymlink("alias", "real"), tarFile("alias/file", "x\n"))
			},
			mention: mentions("alias/file"),
		},
		{
			// A directory replaced by a symlink of the same name, then a
			// file written under the name: the classic replace-then-follow.
			name: "dir-replaced-by-symlink-then-write",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("swap/"), tarSymlink("swap", b.outside), tarFile("swap/"+tok(b, "swap"), "pwned\n"))
			},
			mention: func(b *unpackBox) []string { return []string{"swap/" + tok(b, "swap"), "swap"} },
		},
		{
			// The directory replaces the file, or the tar is refused:
			// never a file left where the tar says there is a directory.
			name:      "file-then-dir-same-name",
			mayAccept: true,
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile("same", "file\n"), tarDir("same/"))
			},
			mention: mentions("same"),
			accepted: func(t *testing.T, layer string) {
				assertKind(t, filepath.Join(layer, "same"), fs.ModeDir)
			},
		},
		{
			name:      "file-then-dir-same-name-then-write",
			mayAccept: true,
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile("same", "file\n"), tarDir("same/"), tarFile("same/inner", "x\n"))
			},
			mention: mentions("same"),
			accepted: func(t *testing.T, layer string) {
				assertFileHolds(t, filepath.Join(layer, "same/inner"), "x\n", "the file in the directory that replaced a file")
			},
		},
		{
			// A directory entry over an absolute symlink: making it must
			// not chmod or chown the symlink's target on the host (with
			// mode 04755 and a host binary as target: a set-user-ID root
			// binary).
			name:      "symlink-then-dir-same-name",
			mayAccept: true,
			tar: func(t *testing.T, b *unpackBox) []byte {
				d := tarDir("chm/")
				d.hdr.Mode = 0o4777
				d.hdr.Uid, d.hdr.Gid = 4242, 4242
				return tarBytes(t, tarSymlink("chm", filepath.Join(b.outside, "secret")), d)
			},
			mention: mentions("chm"),
			accepted: func(t *testing.T, layer string) {
				assertKind(t, filepath.Join(layer, "chm"), fs.ModeDir)
			},
		},
		{
			// A file entry over an absolute symlink: an extractor that
			// opens the name with O_TRUNC writes the sentinel.
			name:      "symlink-then-file-same-name",
			mayAccept: true,
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarSymlink("over", filepath.Join(b.outside, "secret")), tarFile("over", "pwned\n"))
			},
			mention: mentions("over"),
			accepted: func(t *testing.T, layer string) {
				assertFileHolds(t, filepath.Join(layer, "over"), "pwned\n", "the file that replaced a symlink")
			},
		},
		{
			// A hard link to that symlink, then a file by the link's name.
			name:      "hardlink-to-symlink-then-write",
			mayAccept: true,
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t,
					tarSymlink("sym", filepath.Join(b.outside, "secret")),
					tarHardlink("lnk", "sym"),
					tarFile("lnk", "pwned\n"))
			},
			mention: mentions("lnk", "sym"),
			accepted: func(t *testing.T, layer string) {
				assertFileHolds(t, filepath.Join(layer, "lnk"), "pwned\n", "the file that replaced a hard link")
				assertKind(t, filepath.Join(layer, "sym"), fs.ModeSymlink)
			},
		},
		{
			name: "char-device",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarNode("chardev", tar.TypeChar, 1, 3))
			},
			mention: mentions("chardev"),
		},
		{
			// A 0/0 character device is an overlay whiteout: only `.wh.`
			// entries may make one.
			name: "char-device-forged-whiteout",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarNode("fakewhiteout", tar.TypeChar, 0, 0))
			},
			mention: mentions("fakewhiteout"),
		},
		{
			name: "block-device",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarNode("blockdev", tar.TypeBlock, 7, 250))
			},
			mention: mentions("blockdev"),
		},
		{
			// The stage refuses every type it has no case for (devices,
			// FIFOs, sockets...): a FIFO in a layer is harmless, but
			// refusing it keeps the rule simple.
			name: "fifo",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarNode("fifo", tar.TypeFifo, 0, 0))
			},
			mention: mentions("fifo"),
		},
		{
			name: "xattr-overlay-opaque",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, withPAX(tarDir("forged-opaque/"), map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}))
			},
			mention: mentions("forged-opaque"),
		},
		{
			name: "xattr-overlay-redirect",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, withPAX(tarDir("forged-redirect/"), map[string]string{"SCHILY.xattr.trusted.overlay.redirect": "/etc"}))
			},
			mention: mentions("forged-redirect"),
		},
		{
			name: "xattr-overlay-on-file",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, withPAX(tarFile("forged-file", "x\n"), map[string]string{"SCHILY.xattr.trusted.overlay.metacopy": ""}))
			},
			mention: mentions("forged-file"),
		},
		{
			name: "whiteout-in-parent-dir",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarFile("../.wh."+tok(b, "wh"), ""))
			},
			mention: func(b *unpackBox) []string { return []string{"../.wh." + tok(b, "wh")} },
		},
		{
			// ".wh." + "..": a whiteout of the layer's parent directory.
			name: "whiteout-of-dotdot",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("sub/"), tarFile("sub/.wh...", ""))
			},
			mention: mentions("sub/.wh..."),
		},
		{
			name: "whiteout-of-dot",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("sub/"), tarFile("sub/.wh..", ""))
			},
			mention: mentions("sub/.wh.."),
		},
		{
			name: "whiteout-of-empty-name",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return tarBytes(t, tarDir("sub/"), tarFile("sub/.wh.", ""))
			},
			mention: mentions("sub/.wh."),
		},
		{
			name: "truncated-mid-file",
			tar: func(t *testing.T, b *unpackBox) []byte {
				whole := tarBytes(t, tarFile("big", bigBody))
				return whole[:512+len(bigBody)/2]
			},
			mention: mentions("big", "truncated", "unexpected EOF"),
		},
		{
			name: "truncated-mid-header",
			tar: func(t *testing.T, b *unpackBox) []byte {
				whole := tarBytes(t, tarFile("first", "x\n"), tarFile("second", "y\n"))
				return whole[:1024+200] // first's header and block, then part of second's header
			},
			mention: mentions("truncated", "unexpected EOF"),
		},
		{
			// Declares a terabyte, holds a few bytes: must fail at the end
			// of the data, not fill the disk or wait.
			name: "huge-declared-size",
			tar: func(t *testing.T, b *unpackBox) []byte {
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o644, Size: 1 << 40, ModTime: tarModTime}))
				_, err := io.WriteString(tw, "only a few bytes")
				require.NoError(t, err)
				// No Close: it would fail on the missing bytes; what is in
				// buf is the header and the few bytes, as a cut download.
				return buf.Bytes()
			},
			mention: mentions("huge", "truncated", "unexpected EOF"),
		},
		{
			name: "empty-file",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return []byte{}
			},
			mention: mentions("empty", "truncated", "unexpected EOF", "not a tar"),
		},
		{
			name: "not-a-tar",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return []byte(strings.Repeat("this is not a tar archive\n", 40))
			},
			mention: mentions("invalid", "not a tar", "header", "corrupt"),
		},
		{
			name: "corrupt-gzip-stream",
			tar: func(t *testing.T, b *unpackBox) []byte {
				gz := gzipBytes(t, tarBytes(t, tarFile("big", bigBody), tarFile("after", "x\n")))
				for i := 20; i < len(gz)-8; i += 7 {
					gz[i] ^= 0x5a
				}
				require.Error(t, gunzipErr(gz), "the fixture must be corrupt")
				return gz
			},
			mention: brokenArchive,
		},
		{
			// The data is intact, the CRC-32 in the trailer is not: an
			// extractor that stops at the tar's end marker never sees it.
			name: "gzip-bad-checksum",
			tar: func(t *testing.T, b *unpackBox) []byte {
				gz := gzipBytes(t, tarBytes(t, tarFile("file", "x\n")))
				gz[len(gz)-8] ^= 0xff
				require.ErrorIs(t, gunzipErr(gz), gzip.ErrChecksum, "the fixture must have a bad checksum")
				return gz
			},
			mention: brokenArchive,
		},
		{
			name: "gzip-truncated",
			tar: func(t *testing.T, b *unpackBox) []byte {
				gz := gzipBytes(t, tarBytes(t, tarFile("big", bigBody)))
				gz = gz[:len(gz)/2]
				require.Error(t, gunzipErr(gz), "the fixture must be cut")
				return gz
			},
			mention: brokenArchive,
		},
		{
			name: "gzip-header-only",
			tar: func(t *testing.T, b *unpackBox) []byte {
				return []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xde, 0xad}
			},
			mention: brokenArchive,
		},
	}
}

// Every malicious tar is refused with an error naming the entry (or a
// harmless one unpacked safely), and leaves nothing: no file outside the
// store, no half layer or temporary directory in it, no container
// directory, no mount.
func TestStage04UnpackRejectsUnsafeTars(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		token := randomToken(t)
		for _, c := range unsafeTars() {
			t.Run(c.name, func(t *testing.T) {
				b := newUnpackBox(t, token)
				data := c.tar(t, b)
				evil := filepath.Join(b.dir, "evil.tar")
				require.NoError(t, os.WriteFile(evil, data, 0o644))
				digest := sha256Hex(data)

				before := snapshotTree(t, b.dir)
				passwd := stateOf(t, "/etc/passwd")
				res := runEnv(t, b.env(), stage, append(noNetwork(stage), "--layer", evil, rootfsDir, "--", "true")...)

				layer := filepath.Join("root", "layers", digest)
				if c.mayAccept && res.code == 0 {
					t.Logf("accepted (allowed: the tar is harmless if unpacked safely)")
					c.accepted(t, filepath.Join(b.dir, layer))
				} else {
					assert.NotEqual(t, 0, res.code, "the stage accepted %s\nstdout: %s\nstderr: %s", c.name, res.stdout, res.stderr)
					assertMentionsOne(t, res.stderr, c.mention(b))
					assert.NoDirExists(t, filepath.Join(b.dir, layer), "a half layer was left in the store")
					layer = "" // nothing may be left in the store
				}
				assert.Equal(t, passwd, stateOf(t, "/etc/passwd"), "/etc/passwd changed")
				assertNoEscapes(t, token)
				assert.NoDirExists(t, filepath.Join("/var/lib/minibox/layers", digest), "the stage unpacked into the default data root, not MINIBOX_ROOT")
				assertOnlyNew(t, before, snapshotTree(t, b.dir), layer, "root", "root/layers", "root/containers")
				assertNotMounted(t, b.dir)
			})
		}
	})
}

// The positive controls: a well-formed layer is unpacked with its links,
// whiteouts and opaque directory in overlay's form, a gzip one too, and
// the container sees the tree they mean. Without these, a stage that
// refused every tar would pass the test above.
func TestStage04UnpackAcceptsWellFormedLayers(t *testing.T) {
	forEachStage(t, "04", func(t *testing.T, stage string) {
		b := newUnpackBox(t, randomToken(t))
		lower := tarBytes(t,
			tarDir("data/"),
			tarFile("data/keep", "keep\n"),
			tarFile("data/gone", "gone\n"),
			tarFile("data/v1..2", "dots in a name are not a parent\n"),
			tarDir("data/opq/"),
			tarFile("data/opq/old", "old\n"),
			tarDir("data/sub/"),
			tarSymlink("data/sub/up", "../keep"), // climbs, but stays inside
			tarSymlink("data/rel", "keep"),
			tarSymlink("data/abs", "/data/keep"), // resolves in the container
			tarHardlink("data/hard", "data/keep"),
		)
		upper := gzipBytes(t, tarBytes(t,
			tarDir("data/"),
			tarFile("data/.wh.gone", ""),
			tarDir("data/opq/"),
			tarFile("data/opq/.wh..wh..opq", ""),
			tarFile("data/opq/new", "new\n"),
		))
		lowerTar, upperTar := filepath.Join(b.dir, "lower.tar"), filepath.Join(b.dir, "upper.tar.gz")
		require.NoError(t, os.WriteFile(lowerTar, lower, 0o644))
		require.NoError(t, os.WriteFile(upperTar, upper, 0o644))

		script := "ls -a /data; echo --; ls -a /data/opq; echo --; cd /data && cat keep rel abs hard sub/up v1..2 opq/new; test -e gone || echo gone-hidden"
		res := runEnv(t, b.env(), stage, append(noNetwork(stage), "--layer", lowerTar, "--layer", upperTar, rootfsDir, "--", "sh", "-c", script)...)
		require.Equal(t, 0, res.code, "stdout: %s\nstderr: %s", res.stdout, res.stderr)
		assert.Equal(t, strings.Join([]string{
			".", "..", "abs", "hard", "keep", "opq", "rel", "sub", "v1..2", "--",
			".", "..", "new", "--",
			"keep", "keep", "keep", "keep", "keep", "dots in a name are not a parent", "new",
			"gone-hidden", "",
		}, "\n"), res.stdout, "the container's view of the two layers")

		// In the store, each layer is in overlay's own form.
		lowerDir := filepath.Join(b.root, "layers", sha256Hex(lower))
		upperDir := filepath.Join(b.root, "layers", sha256Hex(upper))
		assertLayerStore(t, b.root, sha256Hex(lower), sha256Hex(upper))
		assertSameInode(t, filepath.Join(lowerDir, "data/keep"), filepath.Join(lowerDir, "data/hard"))
		assertLink(t, filepath.Join(lowerDir, "data/abs"), "/data/keep")
		assertLink(t, filepath.Join(lowerDir, "data/sub/up"), "../keep")
		assertWhiteoutAt(t, filepath.Join(upperDir, "data/gone"))
		assert.Equal(t, "y", opaqueXattr(t, filepath.Join(upperDir, "data/opq")), "the opaque directory's xattr")
		for _, name := range []string{"data/.wh.gone", "data/opq/.wh..wh..opq"} {
			assert.NoFileExists(t, filepath.Join(upperDir, name), "a whiteout file was unpacked as a file")
		}
		assertNoEntries(t, filepath.Join(b.root, "containers"), "the container's directory must be removed after it exits")
		assertNotMounted(t, b.dir)
	})
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func randomToken(t *testing.T) string {
	t.Helper()
	var raw [6]byte
	_, err := rand.Read(raw[:])
	require.NoError(t, err)
	return "mbx-unpack-" + hex.EncodeToString(raw[:])
}

// assertMentionsOne checks that the stage's error names the entry (or
// says what is wrong with the archive): "invalid tar" alone would leave
// a user with a thousand-entry layer guessing.
func assertMentionsOne(t *testing.T, stderr string, want []string) {
	t.Helper()
	for _, w := range want {
		if strings.Contains(stderr, w) {
			return
		}
	}
	t.Errorf("stderr names none of %q:\n%s", want, stderr)
}

// assertNoEscapes looks for the token's names where a followed path would
// have put them: /tmp and / (the box itself is compared whole). Whatever
// it finds it removes, after failing.
func assertNoEscapes(t *testing.T, token string) {
	t.Helper()
	for _, dir := range []string{"/tmp", "/"} {
		found, err := filepath.Glob(filepath.Join(dir, token+"*"))
		require.NoError(t, err)
		for _, f := range found {
			t.Errorf("written outside the layer store: %s", f)
			_ = os.RemoveAll(f)
		}
	}
}

// A fileState is what a tree comparison looks at for one path.
type fileState struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	link  string // a symlink's target
	body  string // a regular file's content
	nlink uint64
}

func (s fileState) String() string {
	return fmt.Sprintf("%v size=%d mtime=%s link=%q nlink=%d body=%q", s.mode, s.size, s.mtime.Format(time.RFC3339Nano), s.link, s.nlink, s.body)
}

// snapshotTree records every path under dir (relative to it) with its
// state; directories by mode only, since a stage may create entries in
// them (the data root) and so change their times.
func snapshotTree(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	tree := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		tree[rel] = stateOf(t, path)
		return nil
	})
	require.NoError(t, err)
	return tree
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	info, err := os.Lstat(path)
	require.NoError(t, err)
	s := fileState{mode: info.Mode()}
	if info.IsDir() {
		return s
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		s.nlink = uint64(st.Nlink) // a hard link made to it shows here
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		s.link, err = os.Readlink(path)
		require.NoError(t, err)
	case info.Mode().IsRegular() && info.Size() <= 1<<16:
		body, err := os.ReadFile(path)
		require.NoError(t, err)
		s.body = string(body)
	}
	s.size, s.mtime = info.Size(), info.ModTime()
	return s
}

// assertOnlyNew compares two snapshots: nothing that was there may change
// or go, and what is new may only be the directories allowed (relative
// paths), with nothing in them but each other, and anything in tree
// (relative; "" for none): an accepted layer.
func assertOnlyNew(t *testing.T, before, after map[string]fileState, tree string, allowed ...string) {
	t.Helper()
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	var paths []string
	for p := range before {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		now, exists := after[p]
		switch {
		case !exists:
			t.Errorf("%s was removed", p)
		case now != before[p]:
			t.Errorf("%s changed:\nbefore %s\nafter  %s", p, before[p], now)
		}
	}
	paths = paths[:0]
	for p := range after {
		if _, old := before[p]; !old {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if tree != "" && (p == tree || strings.HasPrefix(p, tree+"/")) {
			continue
		}
		if !ok[p] || !after[p].mode.IsDir() {
			t.Errorf("left behind: %s (%s)", p, after[p])
		}
	}
}

// assertNotMounted fails if any mount point is under dir: the stage's
// overlay is meant to exist only in the container's mount namespace.
func assertNotMounted(t *testing.T, dir string) {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	for _, line := range strings.Split(string(info), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			t.Errorf("left mounted: %s", line)
		}
	}
}

func assertNoEntries(t *testing.T, dir, why string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	require.NoError(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	assert.Empty(t, left, "%s: %s", why, dir)
}

// assertLayerStore checks that the store holds the layers, each under its
// tar file's sha256, and nothing else (no temp directory left over).
func assertLayerStore(t *testing.T, root string, digests ...string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "layers"))
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(digests)
	assert.Equal(t, digests, got, "the layer store: one directory per tar, named by the tar file's sha256")
}

// assertKind checks the type of path itself (a symlink is not followed).
func assertKind(t *testing.T, path string, kind fs.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, kind.String(), info.Mode().Type().String(), "the type of %s", path)
}

func assertSameInode(t *testing.T, a, b string) {
	t.Helper()
	var sa, sb unix.Stat_t
	require.NoError(t, unix.Lstat(a, &sa))
	require.NoError(t, unix.Lstat(b, &sb))
	assert.Equal(t, sa.Ino, sb.Ino, "%s and %s must be one file (a hard link)", a, b)
}

func assertLink(t *testing.T, path, target string) {
	t.Helper()
	got, err := os.Readlink(path)
	require.NoError(t, err)
	assert.Equal(t, target, got, "symlink %s", path)
}

// noNetwork is "run", and from stage 05 on "--net none": unpacking is
// stage 04's business, and a bridge would leave the IPAM's files in the
// data root these tests compare before and after.
func noNetwork(stage string) []string {
	if networkStage(stage) {
		return []string{"run", "--net", "none"}
	}
	return []string{"run"}
}
