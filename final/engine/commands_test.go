package engine_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logs: kept after the container exited (and after the CLI that ran it),
// stdout and stderr apart, --tail, -t, and -f until the container exits.
func TestLogs(t *testing.T) {
	e := newEnv(t)
	_, _, code := e.mb("run", "--name", "done", "--network", "none", e.ref, "sh", "-c", "echo one; echo two >&2; echo three; printf partial")
	require.Equal(t, 0, code)
	out, stderr, code := e.mb("logs", "done")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "one\nthree\npartial", out, "stdout's lines; a last line without newline kept")
	assert.Equal(t, "two\n", stderr)
	out, _, _ = e.mb("logs", "--tail", "1", "done")
	assert.Equal(t, "partial", out)
	out, _, _ = e.mb("logs", "--tail", "0", "done")
	assert.Empty(t, out)
	out, _, _ = e.mb("logs", "-t", "done")
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z one\n\S+ three\n\S+ partial$`, out)
	_, stderr, code = e.mb("logs", "--tail", "x", "done")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "--tail x")

	e.ok("run", "-d", "--name", "ticker", "--network", "none", e.ref, "sh", "-c", "for i in 1 2 3 4; do echo tick$i; sleep 0.3; done")
	start := time.Now()
	out = e.ok("logs", "-f", "ticker")
	assert.Equal(t, "tick1\ntick2\ntick3\ntick4\n", out, "-f prints what comes until the container exits")
	assert.Greater(t, time.Since(start), 600*time.Millisecond, "-f waited for the container")
	assert.Equal(t, "exited", e.inspect("ticker").State.Status)

	_, stderr, code = e.mb("logs", "nosuch")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "no such container: nosuch")
}

// exec joins the container: its files (mount namespace), hostname (UTS),
// processes (PID 1 is the container's command), working directory,
// environment and user, with the flags overriding them; its exit status
// is exec's.
func TestExec(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "box", "--hostname", "boxhost", "-e", "FROMRUN=run", "--network", "none", e.ref,
		"sh", "-c", "echo inside > /tmp/made-by-run; exec sleep 1000")
	require.Eventually(t, func() bool {
		out, _, code := e.mb("exec", "box", "cat", "/tmp/made-by-run")
		return code == 0 && out == "inside\n"
	}, 5*time.Second, 50*time.Millisecond, "exec sees the container's files")

	assert.Equal(t, "boxhost\n", e.ok("exec", "box", "hostname"))
	assert.Equal(t, "sleep\x001000\x00", e.ok("exec", "box", "cat", "/proc/1/cmdline"), "PID 1 is the container's command")
	assert.Equal(t, imageWorkdir+"\n", e.ok("exec", "box", "pwd"))
	assert.Equal(t, "run hello\n", e.ok("exec", "box", "sh", "-c", "echo $FROMRUN $GREETING"))
	assert.Equal(t, "x /tmp 65534\n", e.ok("exec", "-e", "FROMRUN=x", "-w", "/tmp", "-u", "nobody", "box", "sh", "-c", "echo $FROMRUN $(pwd) $(id -u)"))
	ps := e.ok("exec", "box", "ps", "-o", "pid,args")
	assert.Regexp(t, `(?m)^\s*1\s+sleep 1000$`, ps, "the container's PID namespace")

	_, _, code := e.mb("exec", "box", "sh", "-c", "exit 5")
	assert.Equal(t, 5, code, "exec's status is the command's")
	_, stderr, code := e.mb("exec", "box", "/no/such/program")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "/no/such/program")

	cmd := e.command("exec", "-i", "box", "tr", "a-z", "A-Z")
	cmd.Stdin = strings.NewReader("piped\n")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "PIPED\n", string(out))

	out2 := e.ok("exec", "-t", "box", "sh", "-c", "tty; [ -t 1 ] && echo yes")
	assert.Regexp(t, `^/dev/pts/\d+\r\nyes\r\n$`, out2, "-t: a terminal of its own (\\r\\n: the pty's output processing)")

	// An exec'd process must not outlive the container's end in it.
	e.ok("stop", "-t", "1", "box")
	_, stderr, code = e.mb("exec", "box", "true")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "is not running")
}

// stop: SIGTERM that a trap honours, exiting at once with its status;
// without a handler (PID 1 ignores signals it does not handle) SIGKILL
// after -t. kill -s sends the signal asked; kill alone SIGKILL.
func TestStopAndKill(t *testing.T) {
	e := newEnv(t)
	trap := `trap 'echo got TERM; exit 3' TERM; trap 'echo got USR1' USR1; echo ready; while true; do sleep 0.1; done`
	e.ok("run", "-d", "--name", "trapper", "--network", "none", e.ref, "sh", "-c", trap)
	waitLog(t, e, "trapper", "ready")
	e.ok("kill", "-s", "USR1", "trapper")
	waitLog(t, e, "trapper", "got USR1")
	assert.Equal(t, "running", e.inspect("trapper").State.Status, "USR1 handled: still running")

	start := time.Now()
	assert.Equal(t, "trapper\n", e.ok("stop", "-t", "10", "trapper"))
	assert.Less(t, time.Since(start), 5*time.Second, "the trap ended it: no waiting for the timeout")
	r := e.inspect("trapper")
	assert.Equal(t, "exited", r.State.Status)
	assert.Equal(t, 3, r.State.ExitCode)
	assert.Contains(t, e.ok("logs", "trapper"), "got TERM")
	assert.Equal(t, "trapper\n", e.ok("stop", "trapper"), "stopping a stopped container is fine")

	e.ok("run", "-d", "--name", "stubborn", "--network", "none", e.ref, "sleep", "1000")
	start = time.Now()
	e.ok("stop", "-t", "1", "stubborn")
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, time.Second, "stop waited -t before SIGKILL")
	assert.Less(t, took, 6*time.Second)
	assert.Equal(t, 137, e.inspect("stubborn").State.ExitCode)

	e.ok("run", "-d", "--name", "killed", "--network", "none", e.ref, "sleep", "1000")
	e.ok("kill", "killed")
	r = e.waitStatus("killed", "exited", 5*time.Second)
	assert.Equal(t, 137, r.State.ExitCode)
	_, stderr, code := e.mb("kill", "killed")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "not running")
	_, stderr, code = e.mb("kill", "-s", "NOSUCH", "killed")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "NOSUCH")
}

func waitLog(t *testing.T, e *env, ref, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		out, _, _ := e.mb("logs", ref)
		return strings.Contains(out, want)
	}, 5*time.Second, 50*time.Millisecond, "the log of %s never said %q", ref, want)
}

// rm: refused for a running container, -f kills it first, -v takes its
// anonymous volumes along; inspect's record; wait's status.
func TestRmInspectWait(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "svc", "-p", "8080:80", "-v", "/anon", "-v", "named:/named", e.ref, "sleep", "1000"))
	r := e.inspect("svc")
	assert.Equal(t, id, r.ID)
	assert.Equal(t, "running", r.State.Status)
	assert.Regexp(t, `^10\.89\.0\.\d+$`, r.Network.IPAddress)
	assert.Equal(t, "10.89.0.1", r.Network.Gateway)
	assert.Equal(t, []string{"0.0.0.0:8080->80/tcp"}, r.Network.Ports)
	assert.Equal(t, []string{"sleep", "1000"}, r.Config.Cmd)
	require.Len(t, r.Mounts, 2)
	anon := r.Mounts[0]
	assert.Equal(t, "volume", anon.Type)
	assert.Equal(t, "/anon", anon.Destination)
	assert.Len(t, anon.Name, 64, "an anonymous volume's name")
	assert.DirExists(t, anon.Source)
	assert.Equal(t, "named", r.Mounts[1].Name)
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", r.State.Pid))
	require.NoError(t, err, "Pid is a live process")
	self, _ := os.Readlink("/proc/self/ns/pid")
	assert.NotEqual(t, self, ns, "Pid is the container's PID 1, in a PID namespace of its own")

	_, stderr, code := e.mb("rm", "svc")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "is running")
	assert.Equal(t, "running", e.inspect("svc").State.Status)
	assert.Equal(t, "svc\n", e.ok("rm", "-f", "-v", "svc"))
	assert.Empty(t, e.ids())
	assert.NoDirExists(t, filepath.Dir(anon.Source), "rm -v removed the anonymous volume")
	assert.DirExists(t, filepath.Join(e.root, "volumes", "named"), "rm -v keeps named volumes")
	_, stderr, code = e.mb("inspect", "svc")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no such container: svc")

	// Without -v an anonymous volume stays, as docker's.
	e.ok("run", "--name", "keeper", "-v", "/anon", "--network", "none", e.ref, "true")
	kept := e.inspect("keeper").Mounts[0].Source
	e.ok("rm", "keeper")
	assert.DirExists(t, kept)

	e.ok("run", "-d", "--name", "w", "--network", "none", e.ref, "sh", "-c", "sleep 0.5; exit 4")
	start := time.Now()
	assert.Equal(t, "4\n", e.ok("wait", "w"))
	assert.Greater(t, time.Since(start), 200*time.Millisecond)
	assert.Equal(t, "4\n", e.ok("wait", "w"), "wait on an exited container")
	// rm -f of a --rm container: its supervisor removes it meanwhile,
	// which is success, not "no such file".
	e.ok("run", "-d", "--rm", "--name", "gone", "--network", "none", e.ref, "sleep", "1000")
	assert.Equal(t, "gone\n", e.ok("rm", "-f", "gone"))

	_, stderr, code = e.mb("rm", "nosuch", "w")
	assert.Equal(t, 1, code, "one of two failed")
	assert.Contains(t, stderr, "no such container: nosuch")
	assert.Empty(t, e.ids(), "w was removed all the same")
}

// create + start, and start of an exited container runs it again, as
// docker's does.
func TestCreateStart(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("create", "--name", "c", "--network", "none", e.ref, "sh", "-c", "echo started; sleep 0.2"))
	assert.Equal(t, "created", e.inspect(id).State.Status)
	assert.Equal(t, "c\n", e.ok("start", "c"))
	e.ok("wait", "c")
	assert.Equal(t, "started\n", e.ok("logs", "c"))
	e.ok("start", "c")
	e.ok("wait", "c")
	assert.Equal(t, "started\nstarted\n", e.ok("logs", "c"), "started again, its log appended")
	out := e.ok("start", "-a", "c")
	assert.Equal(t, "started\n", out)
}

// create records the image's layer directories, and the supervisor mounts
// those without opening the image store (here: without its index); a
// record from before they were recorded is looked up in the store.
func TestStartMountsTheRecordedLayers(t *testing.T) {
	e := newEnv(t)
	id := strings.TrimSpace(e.ok("create", "--network", "none", e.ref, "cat", "/srv/motd"))
	layers := e.inspect(id).Layers
	require.NotEmpty(t, layers)
	for _, dir := range layers {
		assert.DirExists(t, dir)
	}
	index := filepath.Join(e.root, "images", "index.json")
	require.NoError(t, os.Rename(index, index+".away"))
	out, stderr, code := e.mb("start", "-a", id)
	require.NoError(t, os.Rename(index+".away", index))
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, imageMotd, out, "mounted from the recorded layers, the store's index away")

	path := filepath.Join(e.root, "engine", "containers", id, "container.json")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &fields))
	delete(fields, "Layers") // a record written before layers were recorded
	data, err = json.Marshal(fields)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	assert.Equal(t, imageMotd, e.ok("start", "-a", id), "an older record: its layers looked up")
}

// volumes persist across containers; volume ls, create, rm (refused while
// a container uses the volume); bind mounts read-write and read-only.
func TestVolumes(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "--rm", "--network", "none", "-v", "data:/data", e.ref, "sh", "-c", "echo persisted > /data/f")
	assert.Equal(t, "persisted\n", e.ok("run", "--rm", "--network", "none", "-v", "data:/data:ro", e.ref, "cat", "/data/f"))
	assert.Equal(t, "empty\n", e.ok("volume", "create", "empty"))
	assert.Equal(t, "DRIVER    VOLUME NAME\nlocal     data\nlocal     empty\n", e.ok("volume", "ls"))
	_, stderr, code := e.mb("volume", "create", "bad/name")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "bad/name")

	e.ok("run", "-d", "--name", "user", "--network", "none", "-v", "data:/data", e.ref, "sleep", "1000")
	_, stderr, code = e.mb("volume", "rm", "data")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "volume data is in use by container user")
	e.ok("rm", "-f", "user")
	assert.Equal(t, "data\nempty\n", e.ok("volume", "rm", "data", "empty"))
	assert.Equal(t, "DRIVER    VOLUME NAME\n", e.ok("volume", "ls"))
	_, stderr, code = e.mb("volume", "rm", "data")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no such volume: data")

	host := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644))
	out := e.ok("run", "--rm", "--network", "none", "-v", host+":/mnt", e.ref, "sh", "-c", "cat /mnt/in; echo from container > /mnt/out")
	assert.Equal(t, "from host\n", out)
	data, err := os.ReadFile(filepath.Join(host, "out"))
	require.NoError(t, err)
	assert.Equal(t, "from container\n", string(data))
	out, _, code = e.mb("run", "--rm", "--network", "none", "-v", host+":/mnt:ro", e.ref, "sh", "-c", "cat /mnt/in; echo x > /mnt/out2")
	assert.NotEqual(t, 0, code)
	assert.Equal(t, "from host\n", out)
	assert.NoFileExists(t, filepath.Join(host, "out2"), "a read-only bind mount")
	_, stderr, code = e.mb("run", "--rm", "--network", "none", "-v", "/no/such/dir:/mnt", e.ref, "true")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "/no/such/dir")
}
