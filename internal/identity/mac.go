package identity

import (
	"fmt"
	"net"
	"strings"
)

// NormalizeMAC parses an EUI-48 or EUI-64 address in any common notation
// (aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff, aabbccddeeff) and returns
// it lower-case and colon-separated, the form stored and compared.
func NormalizeMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) == 12 || len(s) == 16 { // bare hex digits
		var b strings.Builder
		for i := 0; i < len(s); i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		s = b.String()
	}
	hw, err := net.ParseMAC(s)
	if err != nil || (len(hw) != 6 && len(hw) != 8) {
		return "", fmt.Errorf("%q is not a MAC address (want 6 or 8 hex octets such as aa:bb:cc:dd:ee:ff)", s)
	}
	return hw.String(), nil
}
