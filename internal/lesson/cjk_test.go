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

// Markdown that the wrapper must neither break nor crash on.
func TestWrapCJKEdgeCases(t *testing.T) {
	cases := []struct{ name, md, want, notWant string }{
		{"unmatched backtick", "中文里有一个 ` 单独的反引号，还有更多的中文文字在后面继续写下去。\n", "`", ""},
		{"double-backtick span", "命令 ``a ` b`` 不能被拆开，后面还有很多很多很多的中文文字。\n", "``a ` b``", ""},
		{"intraword underscore", "写入 net.ipv4.ip_forward 就行，后面还有很多很多很多很多的中文文字。\n", "ip_forward", ""},
		{"escaped star", "乘号写成 2\\*3，后面还有很多很多很多很多很多很多的中文文字和更多的文字。\n", "2\\*3", ""},
		{"setext heading", "中文标题很长很长很长很长很长很长很长很长\n===\n", "中文标题很长很长很长很长很长很长很长很长\n===", ""},
	}
	for _, c := range cases {
		out := wrapCJK(c.md, 16)
		joined := strings.ReplaceAll(out, "\\\n", "")
		assert.Contains(t, joined, c.want, c.name)
	}
}

func TestWrapCJKEscapesBlockMarkersAtLineStarts(t *testing.T) {
	// Wrapped at 12 columns, "> ip_forward" and "- CMD" would each start a
	// line, and Markdown would read a quote and a list item.
	out := wrapCJK("写入中文中 > 文件，然后中文 - CMD 中文字中文字，还有 12. 项。\n", 12)
	for i, l := range strings.Split(out, "\n") {
		if i == 0 {
			continue
		}
		assert.False(t, blockStart.MatchString(strings.TrimLeft(l, " ")), "line %q starts a block", l)
	}
}

func TestWrapCJKKeepsNestingAndHardBreaks(t *testing.T) {
	out := wrapCJK("- 外层\n  - 内层的列表项，文字比较长，需要换行才能放得下。\n", 16)
	lines := strings.Split(out, "\n")
	assert.Equal(t, "- 外层", lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "  - 内层"), "nested marker keeps its indent: %q", lines[1])
	assert.True(t, strings.HasPrefix(lines[2], "    "), "its continuation too: %q", lines[2])

	out = wrapCJK("第一行到此为止  \n第二行从这里开始\n", 40)
	assert.Equal(t, "第一行到此为止\\\n第二行从这里开始\n", out, "a two-space hard break stays a break")
}
