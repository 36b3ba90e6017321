package server

import "testing"

func TestZZDumpRoutes(t *testing.T) {
	r := serve(t)
	for _, rt := range r.p.table.Load().Routes() {
		t.Logf("%v\t%s", rt.AccessTokens, rt.Pattern)
	}
}
