package image

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Users by name or number, groups, docker's --chown rule, and a
// malformed entry that names the user refused (never root).
func TestLookupUser(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(
		"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbroken:x:2000\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644))
	root, err := os.Open(dir)
	require.NoError(t, err)
	defer root.Close()
	for _, tc := range []struct {
		spec  string
		chown bool
		want  User
	}{
		{"app", false, User{1000, 1001, "/home/app"}},
		{"1000", false, User{1000, 1001, "/home/app"}},
		{"app:staff", false, User{1000, 50, "/home/app"}},
		{"app:7", false, User{1000, 7, "/home/app"}},
		{"app", true, User{1000, 1000, "/home/app"}}, // --chown=app: its own number as group
		{"4242", false, User{4242, 0, ""}},           // a number without an entry
		{"0", false, User{0, 0, "/root"}},
	} {
		got, err := LookupUser(root, tc.spec, tc.chown)
		require.NoError(t, err, tc.spec)
		assert.Equal(t, tc.want, got, tc.spec)
	}
	for spec, msg := range map[string]string{
		"nobody":     "user nobody: not a number, and no valid entry",
		"broken":     "user broken: not a number, and no valid entry",
		"app:wheel":  "group wheel: not a number, and no valid entry",
		"../../etc0": "user ../../etc0",
	} {
		_, err := LookupUser(root, spec, false)
		assert.ErrorContains(t, err, msg, spec)
	}
	// The image's /etc/passwd is read inside its root: a symlink to the
	// host's is resolved in the image.
	require.NoError(t, os.Remove(filepath.Join(dir, "etc/passwd")))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "etc/passwd")))
	_, err = LookupUser(root, "root", false)
	assert.ErrorContains(t, err, "user root: not a number", "the host's /etc/passwd was read")
}
