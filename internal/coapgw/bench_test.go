package coapgw

import (
	"context"
	"testing"
	"time"
)

// BenchmarkConfirmableGet is one confirmable GET of call home over an
// established DTLS session, the go-coap client in the same process: for
// profiles of the request path (-cpuprofile, -memprofile; the server's
// part is under dtls/server's serveConnection). bench/coap measures the
// gateway on its own against libcoap.
func BenchmarkConfirmableGet(b *testing.B) {
	e := newEnv(b, nil)
	_, cert := e.thing("BENCH-GET")
	cc, err := e.dial(cert)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if !callsHome(ctx, cc) {
			b.Fatal("no answer")
		}
	}
}
