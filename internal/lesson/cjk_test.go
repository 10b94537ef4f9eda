package lesson

import (
	"strings"
	"testing"

	"github.com/mattn/go-runewidth"
	"github.com/stretchr/testify/assert"
)

func TestWrapCJKLeavesOtherTextAlone(t *testing.T) {
	md := "An English paragraph\nbroken over lines.\n\n- a list\n  item\n\n```sh\n中文 in code\n```\n"
	assert.Equal(t, md, wrapCJK(md, 20))
}

func TestWrapCJKJoinsAndWraps(t *testing.T) {
	md := "# 标题不动\n\n容器其实就是一个普通的 Linux 进程，\n只不过它看到的**世界**小了一圈：`ls -1 /` 只列出\nrootfs 里的东西。\n\n| 表格 | 不动 |\n"
	out := wrapCJK(md, 20)
	lines := strings.Split(out, "\n")
	assert.Equal(t, "# 标题不动", lines[0], "headings are not paragraphs")
	assert.Contains(t, out, "| 表格 | 不动 |", "tables are glamour's")
	var para []string
	for _, l := range lines[2:] {
		if l == "" {
			break
		}
		para = append(para, l)
	}
	assert.Greater(t, len(para), 2)
	joined := ""
	for i, l := range para {
		text := strings.TrimSuffix(l, "\\")
		assert.LessOrEqual(t, runewidth.StringWidth(text), 20, "line %q", l)
		if i < len(para)-1 {
			assert.True(t, strings.HasSuffix(l, "\\"), "hard break at the end of %q", l)
		}
		assert.False(t, strings.HasSuffix(text, "**") && strings.Count(joined+text, "**")%2 == 1, "no line ends on an opening ** (%q)", l)
		joined += text
	}
	assert.Contains(t, joined, "进程，只不过", "no space where the source broke a Chinese line")
	assert.Contains(t, joined, "`ls -1 /`", "code spans are never split")
	assert.Contains(t, joined, "**世界**")
}

func TestWrapCJKListItems(t *testing.T) {
	md := "1. 在 child 中，chroot 和 chdir 之后，\n   加上下面这一行代码。\n2. 第二项\n"
	out := wrapCJK(md, 16)
	lines := strings.Split(out, "\n")
	assert.True(t, strings.HasPrefix(lines[0], "1. 在 child 中，"), lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "   "), "continuation lines stay in the item: %q", lines[1])
	assert.Contains(t, out, "\n2. 第二项")
}

func TestWrapCJKKeepsOpeningBracketsWithTheirText(t *testing.T) {
	out := wrapCJK("最初也只是前端，Docker（2013）最初也只是 LXC 的前端。\n", 16)
	for _, l := range strings.Split(out, "\n") {
		assert.False(t, strings.HasSuffix(strings.TrimSuffix(l, "\\"), "（"), "a line ends on an opening bracket: %q", l)
	}
	assert.Contains(t, strings.ReplaceAll(out, "\\\n", ""), "Docker（2013）")
}
