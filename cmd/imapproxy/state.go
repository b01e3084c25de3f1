package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/store"
)

// stateFile is the SQLite database inside state_dir.
const stateFile = "imapproxy.db"

// keyCheck is the store's meta entry that tells whether the configured
// server key is the one the stored secrets were sealed with.
const (
	keyCheckName    = "key-check"
	keyCheckPurpose = "key-check"
	keyCheckText    = "imapproxy server key check"
)

// state is what serve and the admin verbs share: the store, and the
// server key's sealer (nil when [secrets] key is not configured).
type state struct {
	store  store.Store
	sealer *auth.Sealer
}

// openState opens the store in cfg.StateDir (creating it) and loads the
// server key. A key that does not open what was sealed before is an error
// here, at start-up, never a surprise at the first login.
func openState(ctx context.Context, cfg *config.Config) (*state, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(cfg.StateDir, stateFile))
	if err != nil {
		return nil, err
	}
	s := &state{store: st}
	if cfg.Secrets.Key != "" {
		if s.sealer, err = loadSealer(ctx, st, cfg.Secrets.Key); err != nil {
			st.Close()
			return nil, fmt.Errorf("[secrets] key: %w", err)
		}
	}
	return s, nil
}

func loadSealer(ctx context.Context, st store.Store, ref string) (*auth.Sealer, error) {
	key, err := auth.LoadKey(ref)
	if err != nil {
		return nil, err
	}
	sealer, err := auth.NewSealer(key)
	if err != nil {
		return nil, err
	}
	sealed, err := st.GetMeta(ctx, keyCheckName)
	if errors.Is(err, store.ErrNotFound) {
		check, err := sealer.Seal([]byte(keyCheckText), keyCheckPurpose)
		if err != nil {
			return nil, err
		}
		return sealer, st.PutMeta(ctx, keyCheckName, check)
	}
	if err != nil {
		return nil, err
	}
	if _, err := sealer.Open(sealed, keyCheckPurpose); err != nil {
		return nil, errors.New("this is not the key the secrets in the state directory were encrypted with")
	}
	return sealer, nil
}

// needSealer is the error of a verb that must encrypt without a key.
func (s *state) needSealer() error {
	if s.sealer == nil {
		return errors.New(`[secrets] key is not configured: TOTP and stored passwords are encrypted with it (make one with "imapproxy keygen")`)
	}
	return nil
}

func (s *state) close() { s.store.Close() }
