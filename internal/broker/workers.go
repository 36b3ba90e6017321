package broker

import (
	"runtime"
	"sync"
)

// workers run authentication (token verification and store reads) on a
// few long-lived goroutines. The deep call chains grow the stacks of the
// goroutines that run them; here those are a handful instead of one per
// connection, which at 100,000 connections is hundreds of MiB. They also
// bound how many CONNECTs are verified at once, so a flood of them queues
// instead of swamping the store.
type workers struct {
	jobs chan *job
}

// job is one function for a worker and the signal that it returned; jobs
// are reused, as every CONNECT runs one.
type job struct {
	f    func()
	done chan struct{} // one buffered signal
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

func newWorkers() *workers {
	w := &workers{jobs: make(chan *job)}
	for range max(16, 4*runtime.GOMAXPROCS(0)) {
		go func() {
			for j := range w.jobs {
				j.f()
				j.done <- struct{}{}
			}
		}()
	}
	return w
}

// run runs f on a worker and waits for it.
func (w *workers) run(f func()) {
	j := jobPool.Get().(*job)
	j.f = f
	w.jobs <- j
	<-j.done
	j.f = nil
	jobPool.Put(j)
}

// stop ends the workers once their jobs are done; run must not be called after.
func (w *workers) stop() { close(w.jobs) }
