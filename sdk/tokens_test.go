package sdk

import (
	"context"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// A token refused by a resource before its time is dropped, its refresh
// token kept: the next fetch refreshes with it (and so learns whether the
// grant still stands) instead of giving up.
func TestInvalidateKeepsTheRefreshToken(t *testing.T) {
	var olds []*oauth2.Token
	ts := &TokenSource{c: &Client{}, fetch: func(_ context.Context, old *oauth2.Token) (*oauth2.Token, error) {
		olds = append(olds, old)
		return &oauth2.Token{AccessToken: "at-2", RefreshToken: "rt-2", Expiry: time.Now().Add(time.Hour)}, nil
	}}
	first := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: time.Now().Add(time.Hour)}
	ts.set(first)
	if tok, err := ts.Token(); err != nil || tok != first || len(olds) != 0 {
		t.Fatalf("fresh token not handed out: %v %v %d fetches", tok, err, len(olds))
	}
	ts.invalidate(first)
	tok, err := ts.Token()
	if err != nil || tok.AccessToken != "at-2" {
		t.Fatalf("after invalidate: %v %v", tok, err)
	}
	if len(olds) != 1 || olds[0] == nil || olds[0].RefreshToken != "rt-1" || olds[0].AccessToken != "" {
		t.Fatalf("fetch got %+v, want only the refresh token rt-1", olds)
	}
	// Invalidating a token that is no longer current changes nothing.
	ts.invalidate(first)
	if tok, _ := ts.Token(); tok.AccessToken != "at-2" || len(olds) != 1 {
		t.Fatalf("a stale invalidate dropped the current token")
	}
}
