package engine_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// httpGet fetches url from the test (the host of the containers), with a
// short timeout; "" if it failed.
func httpGet(url string) string {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

// A service container (busybox httpd) reached through -p from the host,
// on 127.0.0.1 and on the host's address, and directly on its own
// address; another container reaches it over the bridge; a port
// published twice is refused; --network none and host.
func TestPortsAndBridge(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "web", "-p", "18080:80", e.ref, "httpd", "-f", "-p", "80", "-h", imageWorkdir)
	web := e.inspect("web")
	require.NotEmpty(t, web.Network.IPAddress)
	var got string
	require.Eventually(t, func() bool { got = httpGet("http://127.0.0.1:18080/motd"); return got == imageMotd },
		10*time.Second, 100*time.Millisecond, "-p 18080:80 from the host's 127.0.0.1: %q", got)
	assert.Equal(t, imageMotd, httpGet("http://"+web.Network.Gateway+":18080/motd"), "-p from the host's own address")
	assert.Equal(t, imageMotd, httpGet("http://"+web.Network.IPAddress+":80/motd"), "the container's address from the host")

	out := e.ok("run", "--rm", e.ref, "wget", "-q", "-O", "-", "http://"+web.Network.IPAddress+"/motd")
	assert.Equal(t, imageMotd, out, "a container reaches another over the bridge")
	out = e.ok("run", "--rm", e.ref, "sh", "-c", "ip -o -4 addr show eth0; cat /etc/hosts")
	assert.Regexp(t, `inet 10\.89\.0\.\d+/24`, out)
	assert.NotContains(t, out, web.Network.IPAddress+"/", "another address than web's")

	_, stderr, code := e.mb("run", "-d", "--name", "web2", "-p", "18080:80", e.ref, "httpd", "-f", "-p", "80")
	assert.Equal(t, 125, code)
	assert.Contains(t, stderr, "18080")
	// As docker's, the container is made and stays Created, with the
	// reason; nothing of a start is left (the end of the test checks).
	web2 := e.inspect("web2")
	assert.Equal(t, "created", web2.State.Status)
	assert.Contains(t, web2.State.Error, "18080")
	assert.Empty(t, containerRules(t, web2.ID[:12]))
	e.ok("rm", "web2")

	out = e.ok("run", "--rm", "--network", "none", e.ref, "ip", "-o", "link")
	assert.Equal(t, 1, strings.Count(out, "\n"), "--network none: lo alone: %s", out)
	assert.Contains(t, out, "lo:")
	out = e.ok("run", "--rm", "--network", "host", e.ref, "ip", "-o", "link")
	assert.Contains(t, out, "minibox0", "--network host: the host's links")

	e.ok("rm", "-f", "web")
	assert.Empty(t, httpGet("http://127.0.0.1:18080/motd"), "the port is no longer published")
}

// A container without --rm gives its network back before run returns: it
// can be started again at once, and its id names its veth, rules and lease
// (supervise.go, releaseNetwork). A --rm container's network goes just
// after (TestManyRunRmCyclesLeaveNothing).
func TestNetworkIsReleasedBeforeRunReturnsWithoutRm(t *testing.T) {
	e := newEnv(t)
	script := "ip -o -4 addr show eth0 | grep -c 10.89.0"
	assert.Equal(t, "1\n", e.ok("run", "--name", "again", "-p", "18097:80", e.ref, "sh", "-c", script))
	short := e.inspect("again").ID[:12]
	for i := 0; i < 2; i++ {
		assert.Empty(t, veths(t), "its veth, at once") // the slowest to go (RCU): first
		assert.Empty(t, leases(t, e.root), "its lease, at once")
		assert.Empty(t, containerRules(t, short), "its rules, at once")
		assert.Equal(t, "1\n", e.ok("start", "-a", "again"), "started again at once: an address again")
	}
	e.ok("rm", "again")
}
