package lessons_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
	"github.com/minibox-lab/minibox/lessons"
)

// Every lesson exists in both languages with the same front matter, the
// same demos and the same expectations: only the prose is translated.
func TestLanguagesMatch(t *testing.T) {
	en, err := lesson.Load(lessons.FS, "en")
	require.NoError(t, err)
	zh, err := lesson.Load(lessons.FS, "zh")
	require.NoError(t, err)
	require.NotEmpty(t, en)
	require.Equal(t, names(en), names(zh), "the same lesson files in en/ and zh/")
	for i := range en {
		a, b := en[i], zh[i]
		assert.Equal(t, a.Stage, b.Stage, a.Name)
		assert.Equal(t, a.Needs, b.Needs, a.Name)
		da, db := a.Demos(), b.Demos()
		require.Equal(t, len(da), len(db), "%s: number of demos", a.Name)
		for k := range da {
			where := fmt.Sprintf("%s demo %d (en line %d, zh line %d)", a.Name, k+1, da[k].Line, db[k].Line)
			assert.Equal(t, da[k].Script, db[k].Script, where)
			assert.Equal(t, da[k].Timeout, db[k].Timeout, where)
			assert.Equal(t, da[k].Exit, db[k].Exit, where)
			assert.Equal(t, da[k].AnyExit, db[k].AnyExit, where)
			assert.Equal(t, da[k].After, db[k].After, where)
			assert.Equal(t, rules(da[k]), rules(db[k]), where)
		}
	}
}

// Every lesson has an exercise and checks what it claims.
func TestLessonsHaveDemosWithExpectations(t *testing.T) {
	for _, lang := range lesson.Langs {
		all, err := lesson.Load(lessons.FS, lang)
		require.NoError(t, err)
		for _, l := range all {
			checked := 0
			for _, d := range l.Demos() {
				if len(d.Expect) > 0 {
					checked++
				}
			}
			assert.GreaterOrEqual(t, checked, 3, "%s/%s: a lesson shows and checks several claims", lang, l.Name)
		}
	}
}

func names(ls []*lesson.Lesson) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

func rules(d *lesson.Demo) []string {
	var out []string
	for _, r := range d.Expect {
		// The block and its order matter too: "expect ordered" in one
		// language only would check the other less.
		out = append(out, fmt.Sprintf("block %d ordered=%v: %s", r.Block, r.Ordered, r.Raw))
	}
	return out
}

// Each lesson, in each language, passes `minibox lesson N --yes --check`,
// run as a student runs it: the minibox binary, a fresh demo rootfs, the
// stages built from the working tree. Nothing may leak.
func TestEveryLessonPassesCheck(t *testing.T) {
	testenv.RequireRoot(t)
	tmp := searchableTempDir(t)
	minibox := buildMinibox(t, tmp)
	rootfsDir := filepath.Join(tmp, "rootfs") // built by the first lesson run

	for _, lang := range lesson.Langs {
		all, err := lesson.Load(lessons.FS, lang)
		require.NoError(t, err)
		for _, l := range all {
			t.Run(fmt.Sprintf("%s/%s", lang, l.Name), func(t *testing.T) {
				testenv.CheckLeaks(t)
				cmd := exec.Command(minibox, "lesson", fmt.Sprint(l.Number), "--yes", "--check", "--lang", lang)
				cmd.Dir = ".."
				cmd.Env = append(os.Environ(),
					"MINIBOX_ROOTFS="+rootfsDir,
					"MINIBOX_STATE="+filepath.Join(tmp, "progress.json"),
				)
				start := time.Now()
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "minibox lesson %d --check --lang %s failed after %s:\n%s", l.Number, lang, time.Since(start), tail(string(out), 60))
				assert.Contains(t, tail(string(out), 3), fmt.Sprintf("Lesson %d done", l.Number))
			})
		}
	}
}

func buildMinibox(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := stages.GoTool()
	require.NoError(t, err)
	bin, err := testenv.BuildMinibox(goTool, dir) // and minibox-shim: lesson 7 runs containers
	require.NoError(t, err)
	return bin
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// searchableTempDir is t.TempDir() made searchable by every uid (0755 up
// to /tmp): with --userns, container root is an unprivileged host uid,
// and it must be able to reach the rootfs kept in here.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	return dir
}
