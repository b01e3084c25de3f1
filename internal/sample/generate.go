package sample

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// GenerateBase is the Date of the first message of Generate; later
// messages follow about a minute and a half apart.
var GenerateBase = time.Date(2024, time.January, 8, 8, 0, 0, 0, time.UTC)

// genDomain is the domain of Generate's Message-IDs.
const genDomain = "gen.imapproxy.example"

// words is the vocabulary of generated subjects and bodies.
var words = strings.Fields(`
	about account action after again agenda already also answer archive
	before benchmark better between billing build cache calendar change
	check client cluster config connection could customer daily data
	deadline deploy design draft during early email error every feature
	final folder follow forward further general given group handle header
	health idle image inbox index issue latency launch limit listen load
	mailbox meeting memory message metric migration minor monday morning
	network next night notes number office offline online order outage
	owner patch people plan please policy pool priority project proxy
	quarter query quick ready reason release reply report request review
	route schedule search second server session shared short should
	since small staging status storage summary support system team test
	thanks thread ticket timeout today token traffic update upgrade
	upstream usage user value version volume weekly while window within
	without worker would yesterday`)

// genRand returns the random source of Generate for seed.
func genRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x6a09e667f3bcc908))
}

// sentence returns between min and max random words separated by spaces,
// the first one capitalised.
func sentence(rng *rand.Rand, min, max int) []byte {
	n := min + rng.IntN(max-min+1)
	var b []byte
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[rng.IntN(len(words))]...)
	}
	if len(b) > 0 && b[0] >= 'a' && b[0] <= 'z' {
		b[0] -= 'a' - 'A'
	}
	return b
}

// bodyLines returns count lines of prose, 50 to 76 characters each, with
// an empty line (a paragraph break) now and then, never first.
func bodyLines(rng *rand.Rand, count int) []string {
	lines := make([]string, 0, count)
	for len(lines) < count {
		if len(lines) > 0 && lines[len(lines)-1] != "" && rng.IntN(7) == 0 {
			lines = append(lines, "")
			continue
		}
		var b []byte
		want := 50 + rng.IntN(27)
		for len(b) < want-12 {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, words[rng.IntN(len(words))]...)
		}
		b = append(b, '.')
		b[0] -= 'a' - 'A'
		lines = append(lines, string(b))
	}
	return lines
}

// genMessageID appends the Message-ID of message i of seed.
func genMessageID(b []byte, seed int64, i int) []byte {
	b = append(b, '<')
	b = strconv.AppendUint(b, uint64(seed), 16)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, '@')
	b = append(b, genDomain...)
	return append(b, '>')
}

// Generate returns n synthetic plain text messages of about size bytes
// each, for benchmarks and load tests. The output depends only on seed, n
// and size: message i is dated GenerateBase plus about i*90 seconds, has
// valid RFC 5322 headers (Date, From, To, Subject, Message-ID,
// MIME-Version, Content-Type), a Message-ID unique to (seed, i), a body of
// 7-bit text lines and CRLF line ends. About one in eight messages replies
// to an earlier one with In-Reply-To and References.
//
// A message is between size-2 and size bytes long, except that it always
// holds its header (about 300 bytes) and at least one body line. Generate
// is fast: well under a second for ten thousand 2 KiB messages.
func Generate(seed int64, n, size int) [][]byte {
	if n <= 0 {
		return nil
	}
	rng := genRand(seed)
	lines := bodyLines(rng, 509)
	// filler is the longest line, so a cut of it can fill any gap a line
	// left open.
	filler := lines[0]
	for _, l := range lines {
		if len(l) > len(filler) {
			filler = l
		}
	}

	people := make([]string, 48)
	domains := []string{"example.com", "example.net", "example.org", "mail.example", "corp.example"}
	for i := range people {
		f := firstNames[rng.IntN(len(firstNames))]
		l := lastNames[rng.IntN(len(lastNames))]
		d := domains[rng.IntN(len(domains))]
		people[i] = f + " " + l + " <" + strings.ToLower(f) + "." + strings.ToLower(l) + "@" + d + ">"
	}

	out := make([][]byte, n)
	capacity := size
	if capacity < 512 {
		capacity = 512
	}
	t := GenerateBase
	for i := range out {
		b := make([]byte, 0, capacity+80)
		b = append(b, "Date: "...)
		b = t.AppendFormat(b, time.RFC1123Z)
		b = append(b, "\r\nFrom: "...)
		b = append(b, people[rng.IntN(len(people))]...)
		b = append(b, "\r\nTo: "...)
		b = append(b, people[rng.IntN(len(people))]...)
		b = append(b, "\r\nSubject: "...)
		reply := i > 0 && rng.IntN(8) == 0
		if reply {
			b = append(b, "Re: "...)
		}
		b = append(b, sentence(rng, 3, 7)...)
		b = append(b, "\r\nMessage-ID: "...)
		b = genMessageID(b, seed, i)
		if reply {
			parent := rng.IntN(i)
			b = append(b, "\r\nIn-Reply-To: "...)
			b = genMessageID(b, seed, parent)
			b = append(b, "\r\nReferences: "...)
			b = genMessageID(b, seed, parent)
		}
		b = append(b, "\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: text/plain; charset=us-ascii\r\n"+
			"Content-Transfer-Encoding: 7bit\r\n\r\n"...)

		start := len(b)
		for {
			line := lines[rng.IntN(len(lines))]
			if len(b)+len(line)+2 > size {
				break
			}
			b = append(b, line...)
			b = append(b, '\r', '\n')
		}
		if rest := size - len(b) - 2; rest > 0 || len(b) == start {
			if rest < 1 {
				rest = len(filler)
			}
			if rest > len(filler) {
				rest = len(filler)
			}
			part := filler[:rest]
			b = append(b, part...)
			if b[len(b)-1] == ' ' {
				b[len(b)-1] = '.'
			}
			b = append(b, '\r', '\n')
		}
		out[i] = b

		t = t.Add(time.Duration(60+rng.IntN(61)) * time.Second)
	}
	return out
}
