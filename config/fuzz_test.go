package config

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes Parse, or the line scanner on text
// the TOML parser refuses, panic or hang.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../config.example.toml"); err == nil {
		f.Add(example)
	}
	for _, seed := range []string{
		minimal,
		minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\n",
		"listen = [{ address = \":993\", tls = \"implicit\" }]\n",
		"a = \"\"\"\nx\\\n\"\"\"\"\"\nb = '''y'''\n[[c.d]]\n[c.d.e]\n",
		"x = [[1, [2]], {a = {b = 1}}]\n",
		"\"quoted\".'lit'.bare = 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		indexLines(data)
		cfg, err := Parse(data, "fuzz.toml")
		if err == nil {
			_ = cfg.Summary()
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate after Parse: %v", err)
			}
		}
	})
}
