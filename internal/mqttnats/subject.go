package mqttnats

import (
	"errors"
	"strings"
)

// Subjects carry an MQTT topic as one NATS token per topic level, after a
// prefix. A level may hold what a NATS token cannot ('.', whitespace, '*',
// '>', nothing at all), so those bytes, and the escape '%' itself, are
// written as '%' and two hex digits, and an empty level as a lone '%'.
// Every other byte, UTF-8 included, is kept: subjects stay readable.

const hexDigits = "0123456789ABCDEF"

// escaped reports whether byte c cannot stand in a token as itself.
func escaped(c byte) bool {
	return c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '%'
}

// Subject is the NATS subject of an MQTT topic under prefix.
func Subject(prefix, topic string) string {
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(topic) + 8)
	b.WriteString(prefix)
	for level := range strings.SplitSeq(topic, "/") {
		b.WriteByte('.')
		writeToken(&b, level)
	}
	return b.String()
}

// writeToken writes a topic level as a subject token.
func writeToken(b *strings.Builder, level string) {
	if level == "" {
		b.WriteByte('%')
		return
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if escaped(c) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
}

// FilterSubjects are the subjects under prefix whose messages an MQTT
// topic filter matches: '+' is '*', and a last '#' is '>' and, as it
// matches its parent level too (§4.7.1.2), that level's subject as well.
func FilterSubjects(prefix, filter string) []string {
	var b strings.Builder
	b.WriteString(prefix)
	parent := ""
	for level := range strings.SplitSeq(filter, "/") {
		switch level {
		case "+":
			b.WriteString(".*")
		case "#":
			parent = b.String()
			b.WriteString(".>")
		default:
			b.WriteByte('.')
			writeToken(&b, level)
		}
	}
	if parent == "" || parent == prefix {
		return []string{b.String()}
	}
	return []string{parent, b.String()}
}

var errSubject = errors.New("mqttnats: not a subject of an MQTT topic")

// Topic is the MQTT topic of a subject under prefix, the inverse of
// Subject; any other subject is an error.
func Topic(prefix, subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", errSubject
	}
	var b strings.Builder
	b.Grow(len(rest))
	for i, token := range strings.Split(rest, ".") {
		if i > 0 {
			b.WriteByte('/')
		}
		if token == "%" {
			continue
		}
		if token == "" {
			return "", errSubject
		}
		for j := 0; j < len(token); j++ {
			c := token[j]
			if escaped(c) && c != '%' {
				return "", errSubject
			}
			if c != '%' {
				b.WriteByte(c)
				continue
			}
			if j+2 >= len(token) {
				return "", errSubject
			}
			hi, lo := strings.IndexByte(hexDigits, token[j+1]), strings.IndexByte(hexDigits, token[j+2])
			if hi < 0 || lo < 0 || !escaped(byte(hi<<4|lo)) {
				return "", errSubject
			}
			b.WriteByte(byte(hi<<4 | lo))
			j += 2
		}
	}
	return b.String(), nil
}
