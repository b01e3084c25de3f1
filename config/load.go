package config

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one problem found in a configuration file. Load and Parse return
// every problem they find, joined with errors.Join, in file order; use
// errors.As or the Unwrap() []error method to get at each one.
type Error struct {
	File string // the path given to Load or Parse
	Line int    // 1-based; 0 when the problem has no line (a missing key)
	Key  string // the key, like "listen[1].tls"; empty for syntax errors
	Msg  string
}

// Error formats e like a compiler does: "config.toml:12: listen[1].tls: ...".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("config")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// joinErrors sorts errs by line, keeping the order of errors on one line and
// putting line-less errors last, and joins them.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Line, errs[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// Load reads the configuration file at path, decodes it strictly, applies
// defaults and validates it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for a file already read; path is used in error messages and
// kept in Config.Path.
//
// Decoding is strict: a key that is not in the schema (keys are case
// sensitive), a value of the wrong type or an invalid value is an error.
// When decoding succeeds, defaults are applied (ApplyDefaults) and the
// result is checked (Validate).
func Parse(data []byte, path string) (*Config, error) {
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return nil, syntaxError(err, path)
	}
	d := &decoder{md: &md, file: path, lines: indexLines(data), reported: map[string]bool{}}
	cfg := &Config{Path: path, lines: d.lines}
	d.table(top, reflect.ValueOf(cfg).Elem(), nil)

	// Every key reaches decoder.table, which reports the unknown ones by
	// comparing them with the schema's names. Undecoded is a backstop for a
	// key the walk missed; it names no index, so it gets the first line.
	for _, k := range md.Undecoded() {
		if !d.underReported(k) {
			p := pathOf()
			for _, seg := range k {
				p = p.with(seg)
			}
			d.add(p, "unknown key")
		}
	}
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// syntaxError reformats an error from the TOML parser as an *Error.
func syntaxError(err error, path string) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: path, Line: pe.Position.Line, Msg: pe.Message}
	}
	return &Error{File: path, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

// decoder walks the decoded TOML with the schema's struct types, one key at
// a time, so that every error knows its full path (array indices included)
// and one bad value does not hide the others.
type decoder struct {
	md       *toml.MetaData
	file     string
	lines    *lineIndex
	errs     []*Error
	reported map[string]bool // keys with an error, without indices
}

func (d *decoder) add(p keyPath, format string, args ...any) {
	d.reported[unindexed(p)] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: d.lines.line(p), Key: p.String(), Msg: fmt.Sprintf(format, args...)})
}

// underReported reports whether k or a key above it has an error already.
func (d *decoder) underReported(k toml.Key) bool {
	for n := 1; n <= len(k); n++ {
		if d.reported[k[:n].String()] {
			return true
		}
	}
	return false
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// tomlName returns the TOML key of a struct field, or "" when the field is
// not part of the file.
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return name
}

// table decodes the keys of one TOML table into the struct dst. The toml
// package matches field names case-insensitively and walks maps in random
// order; going field by field here keeps names exact and errors stable.
func (d *decoder) table(keys map[string]toml.Primitive, dst reflect.Value, at keyPath) {
	t := dst.Type()
	known := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name := tomlName(t.Field(i))
		if name == "" {
			continue
		}
		known[name] = true
		if prim, ok := keys[name]; ok {
			d.value(prim, dst.Field(i), at.with(name))
		}
	}
	for name := range keys {
		if known[name] {
			continue
		}
		p := at.with(name)
		hint := ""
		for k := range known {
			if strings.EqualFold(k, name) {
				hint = fmt.Sprintf(" (did you mean %q?)", k)
			}
		}
		d.add(p, "unknown key%s", hint)
	}
}

// unindexed returns p as toml.Key prints it: without array indices.
func unindexed(p keyPath) string {
	var segs []string
	for _, e := range p {
		if !strings.HasPrefix(e, "[") {
			segs = append(segs, e)
		}
	}
	return strings.Join(segs, ".")
}

func (d *decoder) value(prim toml.Primitive, dst reflect.Value, at keyPath) {
	t := dst.Type()
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshaler):
	case t.Kind() == reflect.Struct:
		if keys, ok := d.tableKeys(prim, at); ok {
			d.table(keys, dst, at)
		}
		return
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct &&
		!reflect.PointerTo(t.Elem()).Implements(textUnmarshaler):
		var elems []toml.Primitive
		if err := d.md.PrimitiveDecode(prim, &elems); err != nil {
			d.add(at, "%s", decodeMessage(err))
			return
		}
		dst.Set(reflect.MakeSlice(t, len(elems), len(elems)))
		for i, elem := range elems {
			if keys, ok := d.tableKeys(elem, at.with(i)); ok {
				d.table(keys, dst.Index(i), at.with(i))
			}
		}
		return
	}
	if err := d.md.PrimitiveDecode(prim, dst.Addr().Interface()); err != nil {
		d.add(at, "%s", decodeMessage(err))
	}
}

// tableKeys decodes a TOML table into its keys. It checks the type itself:
// the toml package lets a non-table value decode into a map as nothing.
func (d *decoder) tableKeys(prim toml.Primitive, at keyPath) (map[string]toml.Primitive, bool) {
	var raw any
	if err := d.md.PrimitiveDecode(prim, &raw); err != nil {
		d.add(at, "%s", decodeMessage(err))
		return nil, false
	}
	if _, ok := raw.(map[string]any); !ok {
		got := strings.ReplaceAll(fmt.Sprintf("%T", raw), "interface {}", "any")
		d.add(at, "wrong type: want table, got %s", tomlType(got))
		return nil, false
	}
	var keys map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &keys); err != nil {
		d.add(at, "%s", decodeMessage(err))
		return nil, false
	}
	return keys, true
}

// typeMismatch matches the toml package's message for a value of the wrong
// type, to say it in TOML's words.
var typeMismatch = regexp.MustCompile(`TOML value has type (\S+); destination has type (.+)$`)

// decodeMessage turns an error from the toml package into the message part
// of an *Error: the key and line are known better here.
func decodeMessage(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	if strings.HasPrefix(msg, "line ") || strings.HasPrefix(msg, "(last key ") {
		if _, rest, ok := strings.Cut(msg, "): "); ok {
			msg = rest
		}
	}
	if m := typeMismatch.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("wrong type: want %s, got %s", tomlType(m[2]), tomlType(m[1]))
	}
	return msg
}

// tomlType names a Go type, as the toml package prints it, in TOML terms.
func tomlType(goType string) string {
	switch goType {
	case "string", "primitive (string-like)":
		return "string"
	case "int64", "integer":
		return "integer"
	case "float64", "float":
		return "float"
	case "bool", "boolean":
		return "boolean"
	case "map", "map[string]any":
		return "table"
	case "slice", "[]any":
		return "array"
	case "[]map[string]any":
		return "array of tables"
	}
	if strings.HasPrefix(goType, "time.") || strings.HasPrefix(goType, "toml.Local") {
		return "date/time"
	}
	return goType
}
