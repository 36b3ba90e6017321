package broker

import "runtime"

// workers run authentication (token verification and store reads) on a
// few long-lived goroutines. The deep call chains grow the stacks of the
// goroutines that run them; here those are a handful instead of one per
// connection, which at 100,000 connections is hundreds of MiB. They also
// bound how many CONNECTs are verified at once, so a flood of them queues
// instead of swamping the store.
type workers struct {
	jobs chan func()
}

func newWorkers() *workers {
	w := &workers{jobs: make(chan func())}
	for range max(16, 4*runtime.GOMAXPROCS(0)) {
		go func() {
			for f := range w.jobs {
				f()
			}
		}()
	}
	return w
}

// run runs f on a worker and waits for it.
func (w *workers) run(f func()) {
	done := make(chan struct{})
	w.jobs <- func() {
		defer close(done)
		f()
	}
	<-done
}

// stop ends the workers once their jobs are done; run must not be called after.
func (w *workers) stop() { close(w.jobs) }
