package ace

import (
	"fmt"
	"net/http"
	"strings"
)

// AIF scopes (RFC 9237, the REST-specific model, §2.3): a scope (9) given as
// a byte string holding the CBOR array [* [path, methods]], methods a
// bitmask of CoAP methods (GET 1, POST 2, PUT 4, DELETE 8, FETCH 16, PATCH
// 32, iPATCH 64). The resources they name are the gateway's own: POST on
// /mqtt/TOPIC publishes on the broker's TOPIC and GET (with Observe)
// subscribes to it, so an AIF scope is the text scopes mqtt:pub:TOPIC and
// mqtt:sub:TOPIC, which the authorization server decides as it decides
// them written as text (one policy, whatever the encoding), and which the
// gateway enforces as it enforces them.

// The methods of RFC 9237 §2.3 the gateway's resources serve.
const (
	aifGET  = 1
	aifPOST = 2
)

// maxAIF bounds the entries of an AIF scope.
const maxAIF = 16

// aifEntry is one [path, methods] of an AIF scope.
type aifEntry struct {
	_       struct{} `cbor:",toarray"`
	Path    string
	Methods uint64
}

// parseAIF reads an AIF scope (the content of scope's byte string) as the
// text scopes it stands for. A refusal names the entry and what is wrong.
func parseAIF(b []byte) ([]string, *Error) {
	var entries []aifEntry
	if err := decMode.Unmarshal(b, &entries); err != nil {
		return nil, invalidScope("scope (9): a byte string must hold an AIF array of [path, methods] (RFC 9237 §2.3): %v", err)
	}
	if len(entries) == 0 || len(entries) > maxAIF {
		return nil, invalidScope("scope (9): an AIF scope has 1 to %d entries", maxAIF)
	}
	var scopes []string
	for i, e := range entries {
		topic, ok := strings.CutPrefix(e.Path, "/mqtt/")
		switch {
		case !ok || topic == "":
			return nil, invalidScope("scope (9) entry %d: %q is not a resource of this gateway (/mqtt/TOPIC)", i, e.Path)
		case strings.ContainsAny(topic, " \"\\"):
			return nil, invalidScope("scope (9) entry %d: %q holds a space, a quote or a backslash", i, e.Path)
		case e.Methods == 0 || e.Methods&^(aifGET|aifPOST) != 0:
			return nil, invalidScope("scope (9) entry %d: methods %d; /mqtt/TOPIC serves GET (1) and POST (2)", i, e.Methods)
		}
		if e.Methods&aifPOST != 0 {
			scopes = append(scopes, "mqtt:pub:"+topic)
		}
		if e.Methods&aifGET != 0 {
			scopes = append(scopes, "mqtt:sub:"+topic)
		}
	}
	return scopes, nil
}

// aifOf is the AIF scope of the granted text scopes, for the answer to a
// request that asked in AIF: each mqtt:pub:/mqtt:sub: scope as its path's
// methods, in the order first granted; other scopes have no AIF form and
// are left out (the CWT then carries them all as text).
func aifOf(scopes []string) ([]byte, error) {
	var entries []aifEntry
	at := map[string]int{}
	for _, s := range scopes {
		var m uint64
		topic, ok := strings.CutPrefix(s, "mqtt:pub:")
		if ok {
			m = aifPOST
		} else if topic, ok = strings.CutPrefix(s, "mqtt:sub:"); ok {
			m = aifGET
		} else {
			continue
		}
		if i, seen := at["/mqtt/"+topic]; seen {
			entries[i].Methods |= m
			continue
		}
		at["/mqtt/"+topic] = len(entries)
		entries = append(entries, aifEntry{Path: "/mqtt/" + topic, Methods: m})
	}
	b, err := encMode.Marshal(entries)
	if err != nil {
		return nil, fmt.Errorf("ace: encoding an AIF scope: %w", err)
	}
	return b, nil
}

// noAIF tells a scope that has no AIF form (not mqtt:pub: or mqtt:sub:).
func noAIF(scope string) bool {
	return !strings.HasPrefix(scope, "mqtt:pub:") && !strings.HasPrefix(scope, "mqtt:sub:")
}

// invalidScope refuses a scope (RFC 6749 §5.2).
func invalidScope(format string, args ...any) *Error {
	return failure(http.StatusBadRequest, "invalid_scope", format, args...)
}
