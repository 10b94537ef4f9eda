package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// run's exit status is the container's: 0, 7, and 128+9 when it is
// killed (from outside: its PID 1 ignores a SIGKILL from inside its own
// PID namespace); --rm leaves nothing once run has returned; without
// --rm the container stays, exited.
func TestRunExitStatus(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 7", 7}} {
		out, stderr, code := e.mb("run", "--rm", "--network", "none", e.ref, "sh", "-c", "echo ran; "+tc.script)
		assert.Equal(t, tc.want, code, "run %q: %s", tc.script, stderr)
		assert.Equal(t, "ran\n", out, tc.script)
		assert.Empty(t, e.ids(), "--rm removed the container before run returned")
	}

	run := e.command("run", "--rm", "--name", "victim", "--network", "none", e.ref, "sleep", "1000")
	require.NoError(t, run.Start())
	e.waitStatus("victim", "running", 10*time.Second)
	e.ok("kill", "victim")
	err := run.Wait()
	require.Error(t, err)
	assert.Equal(t, 137, run.ProcessState.ExitCode(), "run's status after kill (SIGKILL)")
	assert.Empty(t, e.ids())

	// SIGTERM to an attached run goes to the container (docker's
	// sig-proxy), whose trap decides the status.
	run = e.command("run", "--rm", "--name", "proxied", "--network", "none", e.ref,
		"sh", "-c", "trap 'echo proxied; exit 9' TERM; echo ready; while true; do sleep 0.1; done")
	var out strings.Builder
	run.Stdout = &out
	require.NoError(t, run.Start())
	e.waitStatus("proxied", "running", 10*time.Second)
	waitLog(t, e, "proxied", "ready")
	require.NoError(t, run.Process.Signal(syscall.SIGTERM))
	_ = run.Wait()
	assert.Equal(t, 9, run.ProcessState.ExitCode())
	assert.Equal(t, "ready\nproxied\n", out.String())

	_, _, code := e.mb("run", "--name", "kept", "--network", "none", e.ref, "sh", "-c", "exit 3")
	assert.Equal(t, 3, code)
	r := e.inspect("kept")
	assert.Equal(t, "exited", r.State.Status)
	assert.Equal(t, 3, r.State.ExitCode)
	assert.Equal(t, 0, r.State.Pid)
}

// The image's Cmd, Env and WorkingDir apply; -e, --env-file, -w, -u,
// --hostname and --entrypoint override them, as docker's do.
func TestRunConfigAndFlags(t *testing.T) {
	e := newEnv(t)
	out := e.ok("run", "--rm", "--network", "none", e.ref)
	assert.Equal(t, "cmd:hello:"+imageWorkdir+"\n", out, "the image's Cmd, Env and WorkingDir")

	envFile := filepath.Join(t.TempDir(), "env")
	require.NoError(t, os.WriteFile(envFile, []byte("# a comment\n\nFROMFILE=file\nBOTH=file\n"), 0o644))
	out = e.ok("run", "--rm", "--network", "none", "-e", "GREETING=hi", "-e", "BOTH=flag", "--env-file", envFile,
		"-w", "/tmp", "-u", "65534:65534", "--hostname", "box", e.ref,
		"sh", "-c", `echo "$GREETING $FROMFILE $BOTH $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME $(cat /etc/hostname)"`)
	assert.Equal(t, "hi file flag /tmp 65534:65534 box box box\n", out)

	out = e.ok("run", "--rm", "--network", "none", "-u", "nobody", e.ref, "id")
	assert.Contains(t, out, "uid=65534(nobody)", "a user name from the image's /etc/passwd")
	_, stderr, code := e.mb("run", "--rm", "--network", "none", "-u", "nosuchuser", e.ref, "id")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "nosuchuser")

	out = e.ok("run", "--rm", "--network", "none", "--entrypoint", "/bin/echo", e.ref, "via", "entrypoint")
	assert.Equal(t, "via entrypoint\n", out, "--entrypoint with arguments")
	out = e.ok("run", "--rm", "--network", "none", "--entrypoint", "hostname", "--hostname", "h2", e.ref)
	assert.Equal(t, "h2\n", out, "--entrypoint drops the image's Cmd")

	// The default hostname is the short id.
	out = e.ok("run", "--name", "named", "--network", "none", e.ref, "hostname")
	assert.Equal(t, e.inspect("named").ID[:12]+"\n", out)
}

// -i passes stdin through; without -i the container's stdin is empty.
func TestRunInteractiveStdin(t *testing.T) {
	e := newEnv(t)
	cmd := e.command("run", "--rm", "-i", "--network", "none", e.ref, "sh", "-c", "tr a-z A-Z; echo done")
	cmd.Stdin = strings.NewReader("hello\nworld\n")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "HELLO\nWORLD\ndone\n", string(out))

	cmd = e.command("run", "--rm", "--network", "none", e.ref, "sh", "-c", "cat; echo end")
	cmd.Stdin = strings.NewReader("not read\n")
	out, err = cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "end\n", string(out))
}

// -d prints the id and returns; the container goes on running without
// the CLI; --name is taken once.
func TestRunDetachedAndNames(t *testing.T) {
	e := newEnv(t)
	out := e.ok("run", "-d", "--name", "web", "--network", "none", e.ref, "sleep", "1000")
	id := strings.TrimSpace(out)
	assert.Regexp(t, `^[0-9a-f]{64}$`, id)
	r := e.inspect("web")
	assert.Equal(t, id, r.ID)
	assert.Equal(t, "running", r.State.Status)
	assert.True(t, alive(r.State.Pid), "the container's PID 1 runs after run -d has returned")
	assert.True(t, alive(r.State.SupervisorPid))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, "running", e.inspect(id[:5]).State.Status, "a unique id prefix names it")

	_, stderr, code := e.mb("run", "-d", "--name", "web", "--network", "none", e.ref, "true")
	assert.Equal(t, 125, code)
	assert.Contains(t, stderr, `the name "web" is already in use by container `+id[:12])
	assert.Len(t, e.ids(), 1, "the refused run left nothing")
	_, stderr, code = e.mb("create", "--name", "web", e.ref)
	assert.Equal(t, 125, code)
	assert.Contains(t, stderr, `"web" is already in use`)
}

// Bad flag values are exit status 125 with a message naming the flag,
// and nothing is made.
func TestRunBadFlags(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-m", "x"}, "--memory x"},
		{[]string{"-m", "-5m"}, "--memory -5m"},
		{[]string{"-p", "bad"}, "-p bad"},
		{[]string{"-p", "70000:80"}, "-p 70000:80"},
		{[]string{"--network", "x"}, "--network x"},
		{[]string{"-v", "relative/dir:/data"}, "-v relative/dir:/data"},
		{[]string{"-v", "/tmp:data"}, "-v /tmp:data"},
		{[]string{"-e", "=NOVALUE"}, "-e =NOVALUE: expected NAME=VALUE or NAME"},
		{[]string{"--name", "bad name"}, `--name "bad name"`},
		{[]string{"--cpus", "-1"}, "--cpus -1"},
		{[]string{"--env-file", "/nonexistent/env"}, "--env-file"},
		{[]string{"--network", "none", "-p", "80"}, "-p needs --network bridge"},
	} {
		_, stderr, code := e.mb(append(append([]string{"run", "--rm"}, tc.args...), e.ref, "true")...)
		assert.Equal(t, 125, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.msg, "%v", tc.args)
	}
	_, stderr, code := e.mb("run", "--rm", "minibox/no-such-image:v1", "true")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "minibox/no-such-image")
	assert.Empty(t, e.ids(), "a refused run made a container")
	// A command that cannot start: run --rm leaves no container either
	// (rm -f of one whose runtime state is already gone must not give up).
	for i := 0; i < 10; i++ {
		_, stderr, code = e.mb("run", "--rm", "--network", "none", e.ref, "/no/such/command")
		assert.Equal(t, 125, code)
		assert.Contains(t, stderr, `process.args[0] "/no/such/command"`)
		assert.Empty(t, e.ids(), "a run --rm that could not start left its container")
	}
	// run starts the supervisor beside the create (engine.Prestart): with
	// no container to come, it ends.
	assert.Eventually(t, func() bool { return len(supervisorsOf(e.root)) == 0 }, 5*time.Second, 20*time.Millisecond,
		"a refused run left its supervisor: %v", supervisorsOf(e.root))
	names, _ := os.ReadDir(filepath.Join(e.root, "engine", "names"))
	assert.Empty(t, names)
}

// ps: running ones only, -a all of them, -q the ids, --format json the
// records; docker's statuses.
func TestPs(t *testing.T) {
	e := newEnv(t)
	up := strings.TrimSpace(e.ok("run", "-d", "--name", "up", "--network", "none", e.ref, "sleep", "1000"))
	_, _, code := e.mb("run", "--name", "down", "--network", "none", e.ref, "sh", "-c", "exit 7")
	require.Equal(t, 7, code)
	e.ok("create", "--name", "fresh", "--network", "none", e.ref)
	down := e.inspect("down").ID

	out := e.ok("ps")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Regexp(t, `^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$`, lines[0])
	assert.Regexp(t, `^`+up[:12]+`\s+`+regexp.QuoteMeta(e.ref)+`\s+"sleep 1000"\s+.* ago\s+Up (Less than a second|\d+ seconds?)\s+up$`, lines[1])

	out = e.ok("ps", "-a")
	assert.Regexp(t, `(?m)^`+down[:12]+`\s.*\sExited \(7\) (Less than a second|\d+ seconds?) ago\s+down$`, out)
	assert.Regexp(t, `(?m)^[0-9a-f]{12}\s.*\sCreated\s+fresh$`, out)
	assert.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 4)

	assert.Equal(t, up[:12]+"\n", e.ok("ps", "-q"))
	assert.Len(t, strings.Fields(e.ok("ps", "-a", "-q")), 3)

	var list []record
	out = e.ok("ps", "-a", "--format", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	status := map[string]string{}
	for _, r := range list {
		status[r.Name] = r.State.Status
	}
	assert.Equal(t, map[string]string{"up": "running", "down": "exited", "fresh": "created"}, status)
	_, _, code = e.mb("ps", "--format", "yaml")
	assert.NotEqual(t, 0, code)
}

// supervisorsOf lists the supervisor processes of data root root, as
// "PID ARGS".
func supervisorsOf(root string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, d := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		args := strings.Split(string(data), "\x00")
		if err == nil && len(args) > 3 && args[1] == "supervise" && args[3] == root {
			out = append(out, d.Name()+" "+strings.Join(args, " "))
		}
	}
	return out
}
