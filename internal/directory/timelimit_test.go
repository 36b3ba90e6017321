package directory

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/store"
)

// A search whose filter makes the store read every device ends at the time
// limit with timeLimitExceeded, on either store; the connection goes on. The
// store reads an equality on an indexed attribute without interruption
// (storetest's TimeLimit): that must not let a scanning filter through.
func TestSearchTimeLimit(t *testing.T) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) {
			lim := defaultLimits()
			lim.TimeLimit = 10 * time.Millisecond
			e := newEnvOn(t, b.open, withLimits(lim))
			var things []*store.Thing
			for i := range 3000 {
				things = append(things, &store.Thing{DisplayName: fmt.Sprintf("Lamp %d", i), SerialNumber: fmt.Sprintf("TL-%05d", i),
					Manufacturer: "Acme", Model: "L1", Status: store.StatusActive,
					Attributes: map[string]any{"description": fmt.Sprintf("a lamp in room %d of the east wing", i)}})
			}
			errs, err := e.st.CreateThings(context.Background(), things)
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("thing %d: %v", i, err)
				}
			}
			c := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
			// A hundred substrings of a free attribute, none matching: every
			// device's document read a hundred times.
			var terms strings.Builder
			for i := range 100 {
				fmt.Fprintf(&terms, "(description=*west wing %d*)", i)
			}
			_, err = c.Search(ldap.NewSearchRequest("ou=devices,"+base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
				"(|"+terms.String()+")", []string{"1.1"}, nil))
			if !ldap.IsErrorWithCode(err, ldap.LDAPResultTimeLimitExceeded) {
				t.Fatalf("a scan past the time limit: got %v, want timeLimitExceeded", err)
			}
			if _, err := readEntry(c, "", "namingContexts"); err != nil {
				t.Fatalf("the connection after the time limit: %v", err)
			}
		})
	}
}
