package config

import "testing"

func TestIndexLines(t *testing.T) {
	text := `# comment [not.a.table]
top = "a # b" # trailing
dotted.key.here = 1
[log]
level = """
[fake]
fake = 1
"""
format = 'x'
[[upstream]]
name = "a"
[[upstream]]
  name = "b"   # indented
  "quoted key" = 2
[upstream.sub]
x = 1
[[upstream]]
arr = [
  1,
  [2, 3],
  { k = 1,
    j = 2 },
]
inline = { a = 1, b = { c = 2 } }
[ spaced . header ]
y = 0
[[outer]]
[[outer.inner]]
z = 1
[[outer]]
[[outer.inner]]
[[outer.inner]]
z = 2
`
	x := indexLines([]byte(text))
	tests := []struct {
		path keyPath
		want int
	}{
		{pathOf("top"), 2},
		{pathOf("dotted"), 3},
		{pathOf("dotted", "key", "here"), 3},
		{pathOf("log"), 4},
		{pathOf("log", "level"), 5},
		{pathOf("log", "format"), 9},
		{pathOf("fake"), 0},
		{pathOf("log", "fake"), 4}, // not a key: falls back to its table
		{pathOf("upstream"), 10},
		{pathOf("upstream", 0), 10},
		{pathOf("upstream", 0, "name"), 11},
		{pathOf("upstream", 1, "name"), 13},
		{pathOf("upstream", 1, "quoted key"), 14},
		{pathOf("upstream", 1, "sub", "x"), 16},
		{pathOf("upstream", 1, "missing"), 12},
		{pathOf("upstream", 2, "arr", 0), 19},
		{pathOf("upstream", 2, "arr", 1, 1), 20},
		{pathOf("upstream", 2, "arr", 2, "k"), 21},
		{pathOf("upstream", 2, "arr", 2, "j"), 22},
		{pathOf("upstream", 2, "inline", "b", "c"), 24},
		{pathOf("upstream", 3, "name"), 10}, // no such element: the array's first line
		{pathOf("spaced", "header", "y"), 26},
		{pathOf("outer", 0, "inner", 0, "z"), 29},
		{pathOf("outer", 1, "inner", 1, "z"), 33},
		{pathOf("outer", 1, "inner", 1), 32},
		{pathOf("upstream", 2), 17},
		{pathOf("nothing"), 0},
	}
	for _, tt := range tests {
		if got := x.line(tt.path); got != tt.want {
			t.Errorf("line(%s) = %d, want %d", tt.path, got, tt.want)
		}
	}
	if got := pathOf("user", 1, "a.b", 2).String(); got != `user[1]."a.b"[2]` {
		t.Errorf("path = %s", got)
	}
}
