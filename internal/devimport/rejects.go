package devimport

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// spool keeps every rejected row in a temporary file: a file of a million bad
// rows must not cost a million rows of memory.
type spool struct {
	f *os.File
	w *csv.Writer
}

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "thingid-rejects-*.csv")
	if err != nil {
		return nil, fmt.Errorf("rejects spool: %w", err)
	}
	s := &spool{f: f, w: csv.NewWriter(f)}
	if err := s.w.Write([]string{"line", "reason"}); err != nil {
		s.close()
		return nil, fmt.Errorf("rejects spool: %w", err)
	}
	return s, nil
}

func (s *spool) add(e *RowError) error {
	reason := e.Reason
	if e.Field != "" {
		reason = e.Field + ": " + reason
	}
	if err := s.w.Write([]string{strconv.FormatInt(e.Line, 10), reason}); err != nil {
		return fmt.Errorf("rejects spool: %w", err)
	}
	return nil
}

func (s *spool) close() error {
	return errors.Join(s.f.Close(), os.Remove(s.f.Name()))
}

// WriteRejects writes every rejected row to w as CSV with the columns line and
// reason. It needs Options.KeepRejects.
func (s Summary) WriteRejects(w io.Writer) error {
	if s.spool == nil {
		return errors.New("rejected rows were not kept: import with Options.KeepRejects")
	}
	s.spool.w.Flush()
	if err := s.spool.w.Error(); err != nil {
		return fmt.Errorf("rejects spool: %w", err)
	}
	if _, err := s.spool.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rejects spool: %w", err)
	}
	_, err := io.Copy(w, s.spool.f)
	return err
}

// Close removes the spool of rejected rows kept with Options.KeepRejects.
func (s Summary) Close() error {
	if s.spool == nil {
		return nil
	}
	return s.spool.close()
}
