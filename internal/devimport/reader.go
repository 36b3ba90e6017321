package devimport

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// Format is the syntax of a device file.
type Format string

const (
	// CSV: RFC 4180, a header row first, one device per record.
	CSV Format = "csv"
	// JSONLines: one JSON object per line (also known as NDJSON).
	JSONLines Format = "jsonl"
)

// FormatOf picks the format from a file name's extension: .csv, .jsonl or .ndjson.
func FormatOf(name string) (Format, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return CSV, nil
	case ".jsonl", ".ndjson":
		return JSONLines, nil
	}
	return "", fmt.Errorf("cannot tell the format of %q from its extension (want .csv, .jsonl or .ndjson); name the format explicitly", name)
}

// RowError is why one row of a file was not imported. Field is the column or key as
// the file names it (or the identity field the service rejected), empty when the
// row as a whole is wrong.
type RowError struct {
	Line   int64
	Field  string
	Reason string
}

func (e *RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

// Row is one device of the file: exactly one of Thing and Err is set.
type Row struct {
	Line  int64 // where the row starts, counting from 1
	Thing *store.Thing
	Err   *RowError
}

// Reader parses a device file one row at a time, holding at most one row in memory.
type Reader struct {
	read   func() (Row, error)
	offset func() int64
}

// Read returns the next row, or io.EOF after the last one. Any other error means
// the rest of the file cannot be read (an I/O error); a malformed row is a Row
// with Err set, and reading can go on.
func (r *Reader) Read() (Row, error) { return r.read() }

// Offset is how many bytes of the input the rows returned so far span.
func (r *Reader) Offset() int64 { return r.offset() }

// maxLine bounds a JSON line, so one runaway line cannot exhaust memory.
const maxLine = 1 << 20

// NewReader returns a Reader of src in opts.Format, applying opts.Manufacturer and
// opts.Model to rows that leave them empty. For CSV it reads the header and fails
// if a column is unknown or there is no serial number column.
func NewReader(src io.Reader, opts Options) (*Reader, error) {
	switch opts.Format {
	case CSV, JSONLines:
	case "":
		return nil, errors.New("no file format given: use a .csv, .jsonl or .ndjson file name or name the format")
	default:
		return nil, fmt.Errorf("unknown file format %q (want %s or %s)", opts.Format, CSV, JSONLines)
	}
	br := bufio.NewReaderSize(src, 64<<10)
	var bom int64
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		bom = 3
		_, _ = br.Discard(3) // cannot fail: the 3 bytes were just peeked
	}
	defaults := defaults{manufacturer: opts.Manufacturer, model: opts.Model}
	if opts.Format == CSV {
		return newCSVReader(br, bom, defaults)
	}
	j := &jsonReader{br: br, offset: bom, defaults: defaults}
	return &Reader{read: j.read, offset: func() int64 { return j.offset }}, nil
}

// field is a device property a column or key maps to.
type field int

const (
	fSerial field = iota + 1
	fMAC
	fModel
	fManufacturer
	fDisplayName
	fThingType
	fFirmwareVersion
	fLocation
	fExternalID
)

// fields maps lower-cased column (CSV) and key (JSON) names to what they set.
var fields = map[string]field{
	"serialnumber":    fSerial,
	"serial":          fSerial,
	"mac":             fMAC,
	"macaddresses":    fMAC,
	"model":           fModel,
	"manufacturer":    fManufacturer,
	"displayname":     fDisplayName,
	"thingtype":       fThingType,
	"firmwareversion": fFirmwareVersion,
	"location":        fLocation,
	"externalid":      fExternalID,
}

const attrPrefix = "attr."

type defaults struct{ manufacturer, model string }

// row collects one device's values; label remembers the name the file used for
// each field so errors speak the file's language.
type row struct {
	t     *store.Thing
	label map[field]string
}

func newRow() *row { return &row{t: &store.Thing{}, label: map[field]string{}} }

// set assigns a text value; an empty value leaves the field unset.
func (r *row) set(f field, label, v string) *RowError {
	if prev, dup := r.label[f]; dup {
		return &RowError{Field: label, Reason: fmt.Sprintf("given twice (also as %q)", prev)}
	}
	r.label[f] = label
	v = strings.TrimSpace(v)
	t := r.t
	switch f {
	case fSerial:
		t.SerialNumber = v
	case fMAC:
		// Several MACs are separated by ';' or white space.
		for _, m := range strings.FieldsFunc(v, func(c rune) bool { return c == ';' || c == ' ' || c == '\t' }) {
			if err := r.addMAC(label, m); err != nil {
				return err
			}
		}
	case fModel:
		t.Model = v
	case fManufacturer:
		t.Manufacturer = v
	case fDisplayName:
		t.DisplayName = v
	case fThingType:
		t.Type = store.ThingType(v)
	case fFirmwareVersion:
		t.FirmwareVersion = v
	case fLocation:
		t.Location = v
	case fExternalID:
		t.ExternalID = v
	}
	return nil
}

func (r *row) addMAC(label, m string) *RowError {
	n, err := identity.NormalizeMAC(m)
	if err != nil {
		return &RowError{Field: label, Reason: err.Error()}
	}
	r.t.MACAddresses = append(r.t.MACAddresses, n)
	return nil
}

func (r *row) setAttr(name string, v any) {
	if r.t.Attributes == nil {
		r.t.Attributes = map[string]any{}
	}
	r.t.Attributes[name] = v
}

// finish applies the defaults and the rules every row must meet.
func (r *row) finish(d defaults) *RowError {
	if r.t.Manufacturer == "" {
		r.t.Manufacturer = d.manufacturer
	}
	if r.t.Model == "" {
		r.t.Model = d.model
	}
	if r.t.SerialNumber == "" {
		label := r.label[fSerial]
		if label == "" {
			label = "serialNumber"
		}
		return &RowError{Field: label, Reason: "is required: the serial number identifies the unit"}
	}
	return nil
}

// column is what one CSV column holds.
type column struct {
	field field
	label string // the header cell as written
	attr  string // for attr.<name> columns
}

func newCSVReader(br *bufio.Reader, bom int64, d defaults) (*Reader, error) {
	c := &csvReader{defaults: d}
	cr := csv.NewReader(&recordLimit{r: br, c: c})
	c.cr = cr
	cr.FieldsPerRecord = -1 // checked per row, so one short row does not stop the import
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("the file is empty: a CSV device file starts with a header row")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	hline, _ := cr.FieldPos(0)
	cols := make([]column, len(header))
	seen := map[string]string{} // lower-cased name or field key -> label
	hasSerial := false
	for i, h := range header {
		label := strings.TrimSpace(h)
		lower := strings.ToLower(label)
		key := lower
		switch f, ok := fields[lower]; {
		case ok:
			cols[i] = column{field: f, label: label}
			key = fmt.Sprint("field ", f)
			hasSerial = hasSerial || f == fSerial
		case strings.HasPrefix(lower, attrPrefix) && len(label) > len(attrPrefix):
			cols[i] = column{label: label, attr: label[len(attrPrefix):]}
		case label == "":
			return nil, fmt.Errorf("line %d: header column %d has no name", hline, i+1)
		default:
			return nil, fmt.Errorf("line %d: unknown column %q (want serialNumber, mac, model, manufacturer, displayName, thingType, firmwareVersion, location, externalId or attr.<name>)", hline, label)
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: columns %q and %q say the same thing", hline, prev, label)
		}
		seen[key] = label
	}
	if !hasSerial {
		return nil, fmt.Errorf("line %d: no serialNumber column: every device needs its serial number", hline)
	}
	c.cols = cols
	return &Reader{read: c.read, offset: func() int64 { return bom + cr.InputOffset() }}, nil
}

type csvReader struct {
	cr       *csv.Reader
	cols     []column
	defaults defaults
	start    int64 // input offset where the record being read starts
}

// recordLimit fails the read that would make one CSV record longer than maxLine:
// the csv package holds a whole record in memory, and one unbalanced quote would
// make the rest of the file a single record.
type recordLimit struct {
	r    io.Reader
	c    *csvReader
	read int64
}

func (l *recordLimit) Read(p []byte) (int, error) {
	if l.read-l.c.start > maxLine {
		return 0, fmt.Errorf("a CSV record longer than %d bytes: is a quote left open?", maxLine)
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	return n, err
}

func (c *csvReader) read() (Row, error) {
	for {
		c.start = c.cr.InputOffset()
		rec, err := c.cr.Read()
		if err == io.EOF {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && c.cr.InputOffset() > c.start {
			// The csv package resumes after the bad record; report it and go on.
			return Row{Line: int64(pe.StartLine), Err: &RowError{Line: int64(pe.StartLine), Reason: "malformed CSV: " + pe.Err.Error()}}, nil
		}
		if err != nil {
			return Row{}, err
		}
		line, _ := c.cr.FieldPos(0)
		if blank(rec) {
			continue // empty lines and spreadsheet rows of empty cells
		}
		return c.row(int64(line), rec), nil
	}
}

func blank(rec []string) bool {
	for _, s := range rec {
		if strings.TrimSpace(s) != "" {
			return false
		}
	}
	return true
}

func (c *csvReader) row(line int64, rec []string) Row {
	if len(rec) != len(c.cols) {
		return rowErr(line, &RowError{Reason: fmt.Sprintf("has %d fields, the header has %d", len(rec), len(c.cols))})
	}
	r := newRow()
	for i, col := range c.cols {
		if col.attr != "" {
			if v := strings.TrimSpace(rec[i]); v != "" {
				r.setAttr(col.attr, v)
			}
			continue
		}
		if err := r.set(col.field, col.label, rec[i]); err != nil {
			return rowErr(line, err)
		}
	}
	if err := r.finish(c.defaults); err != nil {
		return rowErr(line, err)
	}
	return Row{Line: line, Thing: r.t}
}

func rowErr(line int64, e *RowError) Row {
	e.Line = line
	return Row{Line: line, Err: e}
}

type jsonReader struct {
	br       *bufio.Reader
	offset   int64
	line     int64
	buf      []byte
	defaults defaults
}

func (j *jsonReader) read() (Row, error) {
	for {
		text, tooLong, err := j.readLine()
		if err == io.EOF && len(text) == 0 && !tooLong {
			return Row{}, io.EOF
		}
		if err != nil && err != io.EOF {
			return Row{}, err
		}
		if tooLong {
			return rowErr(j.line, &RowError{Reason: fmt.Sprintf("longer than %d bytes", maxLine)}), nil
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		return j.row(text), nil
	}
}

// readLine returns the next line without its line ending. A line longer than
// maxLine is consumed but not kept.
func (j *jsonReader) readLine() (text []byte, tooLong bool, err error) {
	j.buf = j.buf[:0]
	j.line++
	for {
		chunk, err := j.br.ReadSlice('\n')
		j.offset += int64(len(chunk))
		if !tooLong {
			if len(j.buf)+len(chunk) > maxLine+2 { // +2: the CRLF is not part of the line
				tooLong, j.buf = true, j.buf[:0]
			} else {
				j.buf = append(j.buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(j.buf, "\r\n"), tooLong, err
	}
}

func (j *jsonReader) row(text []byte) Row {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(text, &obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return rowErr(j.line, &RowError{Reason: "want a JSON object, got " + te.Value})
		}
		return rowErr(j.line, &RowError{Reason: "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")})
	}
	if obj == nil {
		return rowErr(j.line, &RowError{Reason: "want a JSON object, got null"})
	}
	r := newRow()
	for _, key := range slices.Sorted(maps.Keys(obj)) { // sorted: the same file gives the same errors
		if err := j.set(r, key, obj[key]); err != nil {
			return rowErr(j.line, err)
		}
	}
	if err := r.finish(j.defaults); err != nil {
		return rowErr(j.line, err)
	}
	return Row{Line: j.line, Thing: r.t}
}

func (j *jsonReader) set(r *row, key string, raw json.RawMessage) *RowError {
	lower := strings.ToLower(key)
	if lower == "attributes" {
		var attrs map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber() // keep numbers exact: 64-bit IDs do not survive float64
		if err := d.Decode(&attrs); err != nil {
			return &RowError{Field: key, Reason: "want an object of name: value"}
		}
		for name, v := range attrs {
			r.setAttr(name, v)
		}
		return nil
	}
	f, ok := fields[lower]
	if !ok {
		return &RowError{Field: key, Reason: "unknown field (want serialNumber, macAddresses, model, manufacturer, displayName, thingType, firmwareVersion, location, externalId or attributes)"}
	}
	if f == fMAC && len(raw) > 0 && raw[0] == '[' {
		var macs []string
		if err := json.Unmarshal(raw, &macs); err != nil {
			return &RowError{Field: key, Reason: "want a string or an array of strings"}
		}
		if err := r.set(f, key, ""); err != nil { // records the label, catches a duplicate
			return err
		}
		for _, m := range macs {
			if err := r.addMAC(key, m); err != nil {
				return err
			}
		}
		return nil
	}
	var s *string // null is the same as absent
	if err := json.Unmarshal(raw, &s); err != nil {
		return &RowError{Field: key, Reason: "want a string, got " + jsonKind(raw)}
	}
	if s == nil {
		return r.set(f, key, "")
	}
	return r.set(f, key, *s)
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}
