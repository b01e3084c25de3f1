package upstream

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want response
	}{
		{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Ready", response{tag: "*", kind: "OK", code: "CAPABILITY", codeArgs: "IMAP4rev1 AUTH=PLAIN", text: "Ready"}},
		{"a1 no [authenticationfailed] Bad", response{tag: "a1", kind: "NO", code: "AUTHENTICATIONFAILED", text: "Bad"}},
		{"a1 OK", response{tag: "a1", kind: "OK"}},
		{"* BYE", response{tag: "*", kind: "BYE"}},
		{"* OK [ALERT]", response{tag: "*", kind: "OK", code: "ALERT"}},
		{"* OK [UNCLOSED {3}", response{tag: "*", kind: "OK", code: "UNCLOSED", codeArgs: "{3}", openCode: true}},
		{"* 3 EXISTS", response{tag: "*", number: "3", kind: "EXISTS"}},
		{"* CAPABILITY IMAP4rev1 IDLE", response{tag: "*", kind: "CAPABILITY", data: "IMAP4rev1 IDLE"}},
		{"+ ", response{tag: "+"}},
		{"+", response{tag: "+"}},
		{"+ aGVsbG8=", response{tag: "+", text: "aGVsbG8="}},
		{"x] OK fine", response{tag: "x]", kind: "OK", text: "fine"}},
	} {
		got, err := parseResponse([]byte(tc.line))
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if *got != tc.want {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.line, *got, tc.want)
		}
	}
	for _, bad := range []string{"", " OK", "a+ OK", "a1 BYE x", "a1 PREAUTH", "a1 CAPABILITY X", "* ", "* 3 OK x", "a(b OK", "* O\x00K"} {
		if r, err := parseResponse([]byte(bad)); err == nil {
			t.Errorf("%q: parsed as %+v, want error", bad, *r)
		}
	}
}

func TestReadResponse(t *testing.T) {
	in := "* ID (\"a\" {5}\r\n12345 \"b\" {2}\r\n\r\n)\r\n" + // literals, one holding CRLF
		"* OK text that ends like {5}\r\n" + // not a literal: status text
		"* OK [BADCHARSET ({5}\r\nUTF-8)] x\r\n" + // literal inside an open code
		"a1 OK done\n" // bare LF
	br := bufio.NewReader(strings.NewReader(in))
	var kinds []string
	for range 4 {
		r, err := readResponse(br)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, r.tag+" "+r.kind)
	}
	if want := []string{"* ID", "* OK", "* OK", "a1 OK"}; !slices.Equal(kinds, want) {
		t.Errorf("got %q, want %q", kinds, want)
	}
	if br.Buffered() != 0 {
		t.Errorf("%d bytes left", br.Buffered())
	}

	for name, bad := range map[string]string{
		"long line":     "* OK " + strings.Repeat("x", maxLineLength) + "\r\n",
		"huge literal":  "* ID {99999999}\r\n",
		"short literal": "* ID {10}\r\nabc",
		"no newline":    "* OK",
		"big response":  "* X {1000000}\r\n" + strings.Repeat("x", 1000000) + " {100000}\r\n" + strings.Repeat("y", 100000) + "\r\n",
	} {
		if _, err := readResponse(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFilterCapabilities(t *testing.T) {
	in := []string{"IMAP4rev1", "starttls", "AUTH=PLAIN", "auth=xoauth2", "IDLE", "LoginDisabled", "SASL-IR", "Unauthenticate", "COMPRESS=DEFLATE", "AUTHX"}
	orig := slices.Clone(in)
	got := FilterCapabilities(in)
	if want := []string{"IMAP4rev1", "IDLE", "COMPRESS=DEFLATE", "AUTHX"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("input modified: %q", in)
	}
	if got := FilterCapabilities(nil); len(got) != 0 {
		t.Errorf("nil: %q", got)
	}
}

func TestQuoteString(t *testing.T) {
	for s, want := range map[string]string{"": `""`, "bob": `"bob"`, "a b{1}": `"a b{1}"`} {
		if got, ok := QuoteString(s); !ok || got != want {
			t.Errorf("QuoteString(%q) = %q, %v", s, got, ok)
		}
	}
	for _, s := range []string{`a"b`, `a\b`, "\xe4", "a\r\nb", "a\x00", "\x7f", strings.Repeat("x", 2000)} {
		if got, ok := QuoteString(s); ok {
			t.Errorf("QuoteString(%q) = %q, want literal", s, got)
		}
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"* OK [CAPABILITY IMAP4rev1] hi\r\n",
		"a1 NO [AUTHENTICATIONFAILED] no\r\n",
		"* ID (\"a\" {3}\r\nabc)\r\n",
		"* OK [X {2}\r\nab] t\r\n",
		"+ \r\n",
		"* 1 EXISTS\r\n* BYE x\r\n",
		"* X {1}\r\n",
		"* X ~{3+}\r\nabc\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		line, _, _ := bytes.Cut(data, []byte("\n"))
		if r, err := parseResponse(line); err == nil {
			if r.tag == "" || (r.tag != "+" && r.kind == "") {
				t.Errorf("%q: incomplete %+v", line, *r)
			}
			if r.tag != "*" && r.tag != "+" && r.kind != "OK" && r.kind != "NO" && r.kind != "BAD" {
				t.Errorf("%q: tagged %q", line, r.kind)
			}
			r.capabilities()
		}
		trailingLiteral(line)
		br := bufio.NewReader(bytes.NewReader(data))
		for range len(data) + 1 {
			if _, err := readResponse(br); err != nil {
				break
			}
		}
	})
}
