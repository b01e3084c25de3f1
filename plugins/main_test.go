package plugins

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/crypto/argon2"

	"imapproxy/plugins/examples"
)

// built are the example plugins, compiled by TestMain.
var built map[string]string

// TestMain builds the example plugins into a temporary directory, runs
// the tests, then checks for leaked goroutines.
func TestMain(m *testing.M) {
	if paths := os.Getenv(helperEnv); paths != "" {
		// A helper process of a test (TestPluginsDieWithTheProxy): the
		// parent built the plugins.
		if err := json.Unmarshal([]byte(paths), &built); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "imapproxy-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built, err = examples.Build(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// cheapArgon2id is an argon2id hash with small parameters, quick under
// -race, in the PHC form auth.CheckPassword reads.
func cheapArgon2id(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64(salt), b64(key))
}
