package auth

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cheapParams make argon2id fast enough to loop over under -race.
var cheapParams = argon2Params{memory: 64, time: 1, threads: 1, keyLen: 32}

// cheapHash returns a cheap argon2id hash of password.
func cheapHash(t testing.TB, password string) string {
	t.Helper()
	h, err := hashArgon2(password, cheapParams)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
