package directory

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Simple Paged Results (RFC 2696). A cookie is a random name of a state
// the session keeps: it means nothing on another connection, and a cookie
// the session did not hand out, or one for another search, is refused. A
// used cookie is forgotten, so it cannot be replayed.

// maxPagedSearches bounds the paged searches one session keeps open; the
// oldest is forgotten beyond it.
const maxPagedSearches = 8

// pageState is where a paged search stopped.
type pageState struct {
	search string // what the cookie continues: base, scope, filter, attributes
	step   int    // the plan step to resume
	after  string // within a stored step, the last id sent
	offset int    // within a stored step sorted otherwise than by id, the entries sent
	sent   int    // entries sent in all (the client's sizeLimit counts them)
	seq    uint64 // when it was stored, to forget the oldest
}

// pagedControl is the client's request: a page size and a cookie.
type pagedControl struct {
	size   int64
	cookie string
}

// decodePaged decodes the control's value: SEQUENCE { size INTEGER, cookie OCTET STRING }.
func decodePaged(c control) (pagedControl, error) {
	bad := errors.New("the paged results control's value is not a size and a cookie")
	if !c.hasValue {
		return pagedControl{}, bad
	}
	p, err := decodeBER(c.value)
	if err != nil || p.Tag != ber.TagSequence || len(p.Children) != 2 {
		return pagedControl{}, bad
	}
	size, err := integer(p.Children[0], ber.ClassUniversal, ber.TagInteger)
	if err != nil || size < 0 {
		return pagedControl{}, bad
	}
	cookie, err := octets(p.Children[1], ber.ClassUniversal, ber.TagOctetString)
	if err != nil {
		return pagedControl{}, bad
	}
	return pagedControl{size: size, cookie: string(cookie)}, nil
}

// pagedResponse is the control of a page's SearchResultDone: the cookie
// that continues it, empty after the last page.
func pagedResponse(cookie string) *ber.Packet {
	v := ber.NewSequence("realSearchControlValue")
	v.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "size"))
	v.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, cookie, "cookie"))
	c := ber.NewSequence("Control")
	c.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, oidPagedResults, "controlType"))
	c.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, string(v.Bytes()), "controlValue"))
	return c
}

// searchKey names a search for its cookies: the same base, scope, filter,
// attributes and sort keys (RFC 2696 §3: the other fields must not change).
func searchKey(r *searchRequest, keys []sortKey) string {
	return fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%t\x00%v", strings.ToLower(r.base), r.scope, r.filter, strings.Join(r.attributes, ","), r.typesOnly, keys)
}

// resume returns the state a cookie names for the search named key, and
// forgets it.
func (ss *session) resume(cookie, key string) (*pageState, bool) {
	st, ok := ss.pages[cookie]
	if !ok || st.search != key {
		return nil, false
	}
	delete(ss.pages, cookie)
	return st, true
}

// park stores st under a new cookie, forgetting the oldest state beyond
// maxPagedSearches.
func (ss *session) park(st *pageState) string {
	if ss.pages == nil {
		ss.pages = map[string]*pageState{}
	}
	if len(ss.pages) >= maxPagedSearches {
		var oldest string
		for k, v := range ss.pages {
			if oldest == "" || v.seq < ss.pages[oldest].seq {
				oldest = k
			}
		}
		delete(ss.pages, oldest)
	}
	ss.pageSeq++
	st.seq = ss.pageSeq
	cookie := rand.Text()
	ss.pages[cookie] = st
	return cookie
}
