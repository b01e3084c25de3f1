package merge

// This file keeps each account's folders in the store (as a meta value),
// so that an account that cannot be reached when a user's hub starts (the
// proxy restarted during the account's outage) still shows its folders
// as last seen, and its namespace, instead of its bare prefix.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/emersion/go-imap/v2"

	"imapproxy/store"
)

// savedFolders is what the store keeps of an account's folders.
type savedFolders struct {
	Delimiter string        `json:"delimiter"`
	Personal  string        `json:"personal"`
	Subs      bool          `json:"subs"` // the list marks subscriptions
	Folders   []savedFolder `json:"folders"`
}

// savedFolder is one LIST entry: the upstream's name and attributes.
type savedFolder struct {
	Name  string   `json:"name"`
	Attrs []string `json:"attrs,omitempty"`
}

// savedFoldersKey is the meta name of an account's saved folders.
func savedFoldersKey(user, account string) string {
	k, _ := json.Marshal([]string{user, account})
	return "merge.folders " + string(k)
}

// loadFolders returns account's saved folders; false when none were
// saved or the store fails (logged: the account then shows its prefix
// only, as before anything was saved).
func (h *Hub) loadFolders(ctx context.Context, account string) (savedFolders, bool) {
	var sf savedFolders
	b, err := h.st.GetMeta(ctx, savedFoldersKey(h.spec.User, account))
	if err == nil {
		err = json.Unmarshal(b, &sf)
	}
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			h.log.Warn("saved folders unreadable", "account", account, "err", err)
		}
		return savedFolders{}, false
	}
	return sf, true
}

// saveFolders keeps an account's LIST answer and namespace; a failure is
// logged and otherwise ignored.
func (h *Hub) saveFolders(ctx context.Context, account, delim, personal string, l []*imap.ListData, subs bool) {
	sf := savedFolders{Delimiter: delim, Personal: personal, Subs: subs, Folders: make([]savedFolder, len(l))}
	for i, ld := range l {
		f := savedFolder{Name: ld.Mailbox}
		for _, a := range ld.Attrs {
			f.Attrs = append(f.Attrs, string(a))
		}
		sf.Folders[i] = f
	}
	b, err := json.Marshal(sf)
	if err == nil {
		err = h.st.PutMeta(ctx, savedFoldersKey(h.spec.User, account), b)
	}
	if err != nil {
		h.log.Warn("saving the account's folders failed", "account", account, "err", err)
	}
}

// list returns the saved folders as a LIST answer.
func (sf savedFolders) list() []*imap.ListData {
	out := make([]*imap.ListData, len(sf.Folders))
	for i, f := range sf.Folders {
		ld := &imap.ListData{Mailbox: f.Name}
		if sf.Delimiter != "" {
			ld.Delim = []rune(sf.Delimiter)[0]
		}
		for _, a := range f.Attrs {
			ld.Attrs = append(ld.Attrs, imap.MailboxAttr(a))
		}
		out[i] = ld
	}
	return out
}

// sameList reports whether two LIST answers name the same folders with
// the same attributes, in order.
func sameList(a, b []*imap.ListData) bool {
	return slices.EqualFunc(a, b, func(x, y *imap.ListData) bool {
		return x.Mailbox == y.Mailbox && slices.Equal(x.Attrs, y.Attrs)
	})
}
