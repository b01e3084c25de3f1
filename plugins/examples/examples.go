// Package examples builds the example plugins, each a program in a
// directory of its own: userfile (an authenticator over a JSON file of
// users with argon2id hashes), domainrouter (a router by domain, with
// listed users in merge mode) and httpauth (an authenticator asking an
// HTTP endpoint, like nginx's auth_http). Tests and benchmarks use Build.
package examples

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// Names are the example plugins.
var Names = []string{"userfile", "domainrouter", "httpauth"}

// Build compiles the example plugins into dir with "go build" and returns
// their paths by name.
func Build(dir string) (map[string]string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("examples: the go command is needed to build the plugins: %w", err)
	}
	paths := make(map[string]string, len(Names))
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range Names {
		args = append(args, "imapproxy/plugins/examples/"+n)
		paths[n] = filepath.Join(dir, n)
	}
	cmd := exec.Command(goBin, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("examples: go build: %v\n%s", err, out)
	}
	return paths, nil
}
