package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Progress prints a running count of done, in unit, on w when w is a
// terminal, and returns a func that stops it and clears the line.
// Elsewhere it prints nothing.
func Progress(w io.Writer, done *atomic.Int64, start time.Time, unit string) func() {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				n := done.Load()
				fmt.Fprintf(w, "\r\033[K%d %s, %.0f/s", n, unit, float64(n)/time.Since(start).Seconds())
			}
		}
	})
	return func() { close(stop); wg.Wait() }
}
