package sample

import (
	"bytes"
	"encoding/base64"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
)

// field is one header field, name and unfolded value.
type field struct {
	name, value string
}

// part is one MIME entity: a leaf with an encoded body, or a multipart
// container with sub-parts.
type part struct {
	header   []field // Content-* fields only
	body     []byte  // leaf: already transfer-encoded, CRLF line ends
	boundary string  // multipart only
	parts    []*part // multipart only
}

// isASCII reports whether s holds only 7-bit characters.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// crlf turns the LF line ends of s into CRLF and makes sure it ends with one.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.TrimRight(s, "\n") + "\n"
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// textPart returns a text/<subtype> leaf: us-ascii and 7bit when the text
// allows, otherwise utf-8 and quoted-printable.
func textPart(subtype, text string) *part {
	text = crlf(text)
	if isASCII(text) {
		return &part{
			header: []field{
				{"Content-Type", "text/" + subtype + "; charset=us-ascii"},
				{"Content-Transfer-Encoding", "7bit"},
			},
			body: []byte(text),
		}
	}
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	w.Write([]byte(text))
	w.Close()
	return &part{
		header: []field{
			{"Content-Type", "text/" + subtype + "; charset=utf-8"},
			{"Content-Transfer-Encoding", "quoted-printable"},
		},
		body: []byte(crlf(buf.String())),
	}
}

// attachmentPart returns a base64 leaf offered as a download named filename.
func attachmentPart(ctype, filename string, data []byte) *part {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n")
	return &part{
		header: []field{
			{"Content-Type", ctype + `; name="` + filename + `"`},
			{"Content-Disposition", `attachment; filename="` + filename + `"`},
			{"Content-Transfer-Encoding", "base64"},
		},
		body: []byte(b.String()),
	}
}

// container returns a multipart/<subtype> container of parts.
func container(subtype, boundary string, parts ...*part) *part {
	return &part{
		header:   []field{{"Content-Type", "multipart/" + subtype + `; boundary="` + boundary + `"`}},
		boundary: boundary,
		parts:    parts,
	}
}

// writeField writes one header field, folded at spaces so that lines stay
// within 78 characters where the value allows it.
func writeField(b *bytes.Buffer, name, value string) {
	line := name + ":"
	for i, word := range strings.Split(value, " ") {
		sep := " "
		if i > 0 && len(line)+1+len(word) > 78 {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = ""
		}
		line += sep + word
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}

// render writes p, header and body.
func (p *part) render(b *bytes.Buffer) {
	for _, f := range p.header {
		writeField(b, f.name, f.value)
	}
	b.WriteString("\r\n")
	if p.parts == nil {
		b.Write(p.body)
		return
	}
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, sub := range p.parts {
		b.WriteString("\r\n--" + p.boundary + "\r\n")
		sub.render(b)
	}
	b.WriteString("\r\n--" + p.boundary + "--\r\n")
}

// envelope is the top-level header of a message.
type envelope struct {
	date       time.Time
	from       mail.Address
	to, cc     []mail.Address
	subject    string
	messageID  string
	inReplyTo  string
	references []string
	extra      []field // placed before MIME-Version
}

// addressList formats addrs for a To or Cc field.
func addressList(addrs []mail.Address) string {
	s := make([]string, len(addrs))
	for i := range addrs {
		s[i] = addrs[i].String()
	}
	return strings.Join(s, ", ")
}

// build renders a complete message with CRLF line ends.
func build(env envelope, body *part) []byte {
	var b bytes.Buffer
	writeField(&b, "Date", env.date.Format(time.RFC1123Z))
	writeField(&b, "From", env.from.String())
	if len(env.to) > 0 {
		writeField(&b, "To", addressList(env.to))
	}
	if len(env.cc) > 0 {
		writeField(&b, "Cc", addressList(env.cc))
	}
	writeField(&b, "Subject", mime.QEncoding.Encode("utf-8", env.subject))
	writeField(&b, "Message-ID", env.messageID)
	if env.inReplyTo != "" {
		writeField(&b, "In-Reply-To", env.inReplyTo)
	}
	if len(env.references) > 0 {
		writeField(&b, "References", strings.Join(env.references, " "))
	}
	for _, f := range env.extra {
		writeField(&b, f.name, f.value)
	}
	writeField(&b, "MIME-Version", "1.0")
	body.render(&b)
	return b.Bytes()
}
