package changes

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestApply(t *testing.T) {
	cfg := ocispec.ImageConfig{Env: []string{"PATH=/bin", "NAME=world"}, Cmd: []string{"old"}, WorkingDir: "/srv"}
	require.NoError(t, Apply(&cfg, []string{
		`CMD echo "hello $NAME"`,
		`ENTRYPOINT ["/bin/tini", "--"]`,
		`ENV GREETING="hi $NAME" PATH=/usr/bin:$PATH`,
		`LABEL a=1 "b c"=2`,
		`EXPOSE 80 53/udp`,
		`USER app:app`,
		`WORKDIR sub`,
		`VOLUME /data /cache`,
		`STOPSIGNAL TERM`,
	}))
	assert.Equal(t, []string{"/bin/sh", "-c", `echo "hello $NAME"`}, cfg.Cmd, "the shell form runs in /bin/sh -c, unexpanded")
	assert.Equal(t, []string{"/bin/tini", "--"}, cfg.Entrypoint)
	assert.Equal(t, []string{"PATH=/usr/bin:/bin", "NAME=world", "GREETING=hi world"}, cfg.Env)
	assert.Equal(t, map[string]string{"a": "1", "b c": "2"}, cfg.Labels)
	assert.Equal(t, map[string]struct{}{"80/tcp": {}, "53/udp": {}}, cfg.ExposedPorts)
	assert.Equal(t, "app:app", cfg.User)
	assert.Equal(t, "/srv/sub", cfg.WorkingDir)
	assert.Equal(t, map[string]struct{}{"/data": {}, "/cache": {}}, cfg.Volumes)
	assert.Equal(t, "TERM", cfg.StopSignal)

	for change, want := range map[string]string{
		"RUN true":           "RUN is not a change docker allows",
		"EXPOSE 99999":       "EXPOSE 99999: expected PORT",
		"STOPSIGNAL SIGNOPE": "not a signal name or number",
		"CMD a\nCMD b":       "expected one Dockerfile instruction",
		"NOPE x":             "unknown instruction",
	} {
		err := Apply(&cfg, []string{change})
		assert.ErrorContains(t, err, want, change)
	}
}
