package runtime

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/testenv"
)

// copyOfTestBinary is a disposable copy of this test binary: what the
// sealing functions open, so that a broken seal could never damage the
// binary the tests run from.
func copyOfTestBinary(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.Open("/proc/self/exe")
	require.NoError(t, err)
	defer src.Close()
	path := filepath.Join(dir, "bin", "minibox-shim")
	require.NoError(t, os.Mkdir(filepath.Dir(path), 0o755))
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	return path
}

// reopenForWrite opens the sealed file for writing, as the attack does
// (open(/proc/self/fd/N, O_WRONLY)).
func reopenForWrite(f *os.File) (*os.File, error) {
	return os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY, 0)
}

// The zero-copy seal must work on this kernel (as root): if it silently
// fell back to the memfd, every container would pay a copy of the binary.
func TestSealedExeIsAReadOnlyOverlay(t *testing.T) {
	testenv.RequireRoot(t) // fsopen(overlay)
	bin := copyOfTestBinary(t)
	f, err := overlayExe(bin, t.TempDir())
	require.NoError(t, err)
	defer f.Close()
	w, err := reopenForWrite(f)
	if err == nil {
		w.Close()
	}
	require.ErrorIs(t, err, unix.EROFS, "the overlay's binary must not be writable")
	sealed, err := sealedExe(bin, t.TempDir())
	require.NoError(t, err)
	defer sealed.Close()
	require.GreaterOrEqual(t, int(sealed.Fd()), minSealedFD)
	var st unix.Statfs_t
	require.NoError(t, unix.Fstatfs(int(sealed.Fd()), &st))
	require.Equal(t, int64(unix.OVERLAYFS_SUPER_MAGIC), int64(st.Type), "sealedExe must use the overlay here")
}

// The fallback: a memfd copy that nobody can write.
func TestSealedExeMemfdCannotBeWritten(t *testing.T) {
	bin := copyOfTestBinary(t)
	f, err := memfdExe(bin)
	require.NoError(t, err)
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	require.NoError(t, err)
	require.Equal(t, memfdBaseSeals, seals&memfdBaseSeals)
	w, err := reopenForWrite(f)
	if err == nil {
		defer w.Close()
		_, err = w.Write([]byte("x"))
	}
	require.ErrorIs(t, err, unix.EPERM, "a sealed memfd must refuse writes")
}

// What sealing costs per container (go test -bench SealedExe).
func BenchmarkSealedExe(b *testing.B) {
	testenv.RequireRoot(b)
	bin := copyOfTestBinary(b)
	scratch := b.TempDir()
	for _, m := range []struct {
		name string
		seal func() (*os.File, error)
	}{
		{"overlay", func() (*os.File, error) { return overlayExe(bin, scratch) }},
		{"memfd", func() (*os.File, error) { return memfdExe(bin) }},
	} {
		b.Run(m.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				f, err := m.seal()
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
