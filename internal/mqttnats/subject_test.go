package mqttnats

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSubject(t *testing.T) {
	for topic, subject := range map[string]string{
		"a/b":         "mqtt.a.b",
		"a.b/c d":     "mqtt.a%2Eb.c%20d",
		"/a//":        "mqtt.%.a.%.%",
		"*/>/%":       "mqtt.%2A.%3E.%25",
		"caf\u00e9/x": "mqtt.caf\u00e9.x",
		"":            "mqtt.%",
	} {
		if got := Subject("mqtt", topic); got != subject {
			t.Errorf("Subject(%q) = %q, want %q", topic, got, subject)
		}
		if got, err := Topic("mqtt", subject); err != nil || got != topic {
			t.Errorf("Topic(%q) = %q, %v; want %q", subject, got, err, topic)
		}
	}
	for _, bad := range []string{"mqtt", "other.a", "mqtt.a..b", "mqtt.%2", "mqtt.%41", "mqtt.%2e", "mqtt.a*", "mqtt.%zz"} {
		if got, err := Topic("mqtt", bad); err == nil {
			t.Errorf("Topic(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	for filter, want := range map[string]string{
		"a/b":     "mqtt.a.b",
		"a/+/c":   "mqtt.a.*.c",
		"#":       "mqtt.>",
		"a/#":     "mqtt.a mqtt.a.>",
		"+/a.b/#": "mqtt.*.a%2Eb mqtt.*.a%2Eb.>",
		"/+":      "mqtt.%.*",
		"*/>":     "mqtt.%2A.%3E",
	} {
		if got := strings.Join(FilterSubjects("mqtt", filter), " "); got != want {
			t.Errorf("FilterSubjects(%q) = %q, want %q", filter, got, want)
		}
	}
}

// FuzzSubject: every topic maps to a valid NATS subject (tokens neither
// empty nor wildcards nor holding a separator or whitespace) and back to
// itself; every subject Topic accepts maps back to that subject.
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"a/b", "a.b/ /*/>", "//", "%41", "caf\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if utf8.ValidString(s) {
			subject := Subject("mqtt", s)
			for token := range strings.SplitSeq(subject, ".") {
				if token == "" || token == "*" || token == ">" || strings.ContainsAny(token, " \t\r\n*>") {
					t.Fatalf("Subject(%q) = %q: token %q", s, subject, token)
				}
			}
			if got, err := Topic("mqtt", subject); err != nil || got != s {
				t.Fatalf("Topic(Subject(%q)) = %q, %v", s, got, err)
			}
		}
		if topic, err := Topic("mqtt", s); err == nil && Subject("mqtt", topic) != s {
			t.Fatalf("Subject(Topic(%q)) = %q", s, Subject("mqtt", topic))
		}
	})
}
