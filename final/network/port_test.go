package network

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]Port{
		"8080:80":              {HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		"127.0.0.1:8080:80":    {HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		"8080:80/udp":          {HostPort: 8080, ContainerPort: 80, Proto: "udp"},
		"80":                   {ContainerPort: 80, Proto: "tcp"},
		"53/udp":               {ContainerPort: 53, Proto: "udp"},
		"127.0.0.1::80":        {HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"},
		"0.0.0.0:8080:80/tcp":  {HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		"10.1.2.3:65535:1/udp": {HostIP: "10.1.2.3", HostPort: 65535, ContainerPort: 1, Proto: "udp"},
	} {
		got, err := ParsePort(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	for in, why := range map[string]string{
		"":                  "not a port number",
		"8080:":             "not a port number",
		"x:80":              "not a port number",
		"0:80":              "not a port number",
		"8080:65536":        "not a port number",
		"8080:80/sctp":      "tcp or udp",
		"8000-8010:80-90":   "ranges are not supported",
		"[::1]:8080:80":     "IPv6",
		"::1:8080:80":       "expected",
		"localhost:8080:80": "not an IPv4 address",
		"1.2.3.4:5:6:7":     "expected",
	} {
		_, err := ParsePort(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), why, in)
			assert.Contains(t, err.Error(), in, "the error names the flag's value")
		}
	}
}

func TestPortStringAndClashes(t *testing.T) {
	p, err := ParsePort("8080:80")
	require.NoError(t, err)
	assert.Equal(t, "0.0.0.0:8080->80/tcp", p.String())
	local, _ := ParsePort("127.0.0.1:8080:81")
	other, _ := ParsePort("10.0.0.1:8080:82")
	udp, _ := ParsePort("8080:80/udp")
	assert.True(t, p.clashes(local), "every address includes 127.0.0.1")
	assert.True(t, local.clashes(p))
	assert.False(t, local.clashes(other), "two addresses, one port number each")
	assert.False(t, p.clashes(udp), "tcp and udp are two ports")
	back, ok := portOfKey(local.key())
	assert.True(t, ok)
	assert.Equal(t, Port{HostIP: "127.0.0.1", HostPort: 8080, Proto: "tcp"}, back, "stage 05's key read back")
}

func TestShortIDAndOptions(t *testing.T) {
	_, err := Setup("ABC", Options{Root: t.TempDir()})
	assert.ErrorContains(t, err, "hex digits")
	_, err = Setup("0123456789ab", Options{Root: t.TempDir(), Subnet: "10.89.0.0/31"})
	assert.ErrorContains(t, err, "too small")
	_, err = Setup("0123456789ab", Options{Root: t.TempDir(), Subnet: "fd00::/64"})
	assert.ErrorContains(t, err, "IPv4")
	_, err = Setup("0123456789ab", Options{Root: t.TempDir(), Bridge: "a-very-long-bridge-name"})
	assert.ErrorContains(t, err, "15 characters")
	_, err = Setup("0123456789ab", Options{})
	assert.ErrorContains(t, err, "data root")
}
