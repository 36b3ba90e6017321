package devimport

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// readAll parses a whole file; it fails the test if a row is neither a thing nor
// an error, or both.
func readAll(t testing.TB, format Format, input string, opts Options) ([]Row, error) {
	t.Helper()
	opts.Format = format
	rd, err := NewReader(strings.NewReader(input), opts)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for {
		row, err := rd.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		if (row.Thing == nil) == (row.Err == nil) {
			t.Fatalf("row %+v: want exactly one of Thing and Err", row)
		}
		if row.Err != nil && row.Err.Line != row.Line {
			t.Fatalf("row at line %d has an error at line %d", row.Line, row.Err.Line)
		}
		rows = append(rows, row)
	}
}

// want is the expected outcome of one row: a thing, or the text of its error.
type want struct {
	line  int64
	thing *store.Thing
	err   string
}

func check(t *testing.T, rows []Row, wants []want) {
	t.Helper()
	if len(rows) != len(wants) {
		for _, r := range rows {
			t.Logf("got line %d: %+v %v", r.Line, r.Thing, r.Err)
		}
		t.Fatalf("got %d rows, want %d", len(rows), len(wants))
	}
	for i, w := range wants {
		r := rows[i]
		if r.Line != w.line {
			t.Errorf("row %d: line %d, want %d", i, r.Line, w.line)
		}
		switch {
		case w.err != "":
			if r.Err == nil || r.Err.Error() != w.err {
				t.Errorf("row %d: error %v, want %q", i, r.Err, w.err)
			}
		case r.Err != nil:
			t.Errorf("row %d: unexpected error %v", i, r.Err)
		case !reflect.DeepEqual(r.Thing, w.thing):
			t.Errorf("row %d:\n got %+v\nwant %+v", i, r.Thing, w.thing)
		}
	}
}

func TestReadCSV(t *testing.T) {
	const header = "serialNumber,mac,model,manufacturer\n"
	dev := func(serial string, macs ...string) *store.Thing {
		return &store.Thing{SerialNumber: serial, MACAddresses: macs, Model: "M1", Manufacturer: "Acme"}
	}
	tests := []struct {
		name  string
		input string
		opts  Options
		want  []want
	}{{
		name: "every column",
		input: "Serial,MacAddresses,model,MANUFACTURER,displayName,thingType,firmwareVersion,location,externalId,attr.color,attr.batch\n" +
			"SN-1,AA-BB-CC-DD-EE-01;aabb.ccdd.ee02 001122334455,X1,Acme,Kitchen speaker,device,1.2.3,kitchen,ext-1,red,\n",
		want: []want{{line: 2, thing: &store.Thing{
			SerialNumber: "SN-1", MACAddresses: []string{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02", "00:11:22:33:44:55"},
			Model: "X1", Manufacturer: "Acme", DisplayName: "Kitchen speaker", Type: store.ThingDevice,
			FirmwareVersion: "1.2.3", Location: "kitchen", ExternalID: "ext-1", Attributes: map[string]any{"color": "red"},
		}}},
	}, {
		name:  "defaults fill empty manufacturer and model only",
		input: "serial,model\nSN-1,\nSN-2,Own\n",
		opts:  Options{Manufacturer: "Acme", Model: "M1"},
		want: []want{
			{line: 2, thing: &store.Thing{SerialNumber: "SN-1", Manufacturer: "Acme", Model: "M1"}},
			{line: 3, thing: &store.Thing{SerialNumber: "SN-2", Manufacturer: "Acme", Model: "Own"}},
		},
	}, {
		name:  "bad MACs",
		input: header + "SN-1,zz:bb:cc:dd:ee:ff,M1,Acme\nSN-2,aa:bb:cc,M1,Acme\nSN-3,aa:bb:cc:dd:ee:ff;;,M1,Acme\n",
		want: []want{
			{line: 2, err: `line 2: mac: "zz:bb:cc:dd:ee:ff" is not a MAC address (want 6 or 8 hex octets such as aa:bb:cc:dd:ee:ff)`},
			{line: 3, err: `line 3: mac: "aa:bb:cc" is not a MAC address (want 6 or 8 hex octets such as aa:bb:cc:dd:ee:ff)`},
			{line: 4, thing: dev("SN-3", "aa:bb:cc:dd:ee:ff")},
		},
	}, {
		name:  "missing serial",
		input: header + ",aa:bb:cc:dd:ee:ff,M1,Acme\n   ,,M1,Acme\n",
		want: []want{
			{line: 2, err: "line 2: serialNumber: is required: the serial number identifies the unit"},
			{line: 3, err: "line 3: serialNumber: is required: the serial number identifies the unit"},
		},
	}, {
		name:  "wrong number of fields",
		input: header + "SN-1,aa:bb:cc:dd:ee:ff\nSN-2,,M1,Acme,extra\nSN-3,,M1,Acme\n",
		want: []want{
			{line: 2, err: "line 2: has 2 fields, the header has 4"},
			{line: 3, err: "line 3: has 5 fields, the header has 4"},
			{line: 4, thing: dev("SN-3")},
		},
	}, {
		name: "quoted fields, embedded newline, commas and quotes",
		input: "serial,displayName,mac,attr.note\n" +
			"\"SN,1\",\"Hall \"\"big\"\" lamp\",\"aa:bb:cc:dd:ee:01; aa:bb:cc:dd:ee:02\",\"two\nlines\"\n" +
			"SN-2,plain,,\n",
		want: []want{
			{line: 2, thing: &store.Thing{SerialNumber: "SN,1", DisplayName: `Hall "big" lamp`,
				MACAddresses: []string{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"}, Attributes: map[string]any{"note": "two\nlines"}}},
			{line: 4, thing: &store.Thing{SerialNumber: "SN-2", DisplayName: "plain"}},
		},
	}, {
		name:  "malformed quotes are a row error and reading goes on",
		input: "serial,model\nSN-\"1,M1\nSN-2,M1\n",
		want: []want{
			{line: 2, err: `line 2: malformed CSV: bare " in non-quoted-field`},
			{line: 3, thing: &store.Thing{SerialNumber: "SN-2", Model: "M1"}},
		},
	}, {
		name:  "BOM, CRLF and empty lines",
		input: "\ufeffserialNumber,mac,model,manufacturer\r\n\r\nSN-1,aa:bb:cc:dd:ee:ff,M1,Acme\r\n,,,\r\n\r\nSN-2,,M1,Acme\r\n",
		want: []want{
			{line: 3, thing: dev("SN-1", "aa:bb:cc:dd:ee:ff")},
			{line: 6, thing: dev("SN-2")},
		},
	}, {
		name:  "no final newline",
		input: header + "SN-1,,M1,Acme",
		want:  []want{{line: 2, thing: dev("SN-1")}},
	}, {
		name:  "header only",
		input: header,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := readAll(t, CSV, tt.input, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			check(t, rows, tt.want)
		})
	}
}

func TestReadCSVHeader(t *testing.T) {
	tests := []struct{ name, input, err string }{
		{"empty file", "", "the file is empty: a CSV device file starts with a header row"},
		{"unknown column", "serial,colour\n", `line 1: unknown column "colour" (want serialNumber, mac, model, manufacturer, displayName, thingType, firmwareVersion, location, externalId or attr.<name>)`},
		{"attributes column is JSON only", "serial,attributes\n", `line 1: unknown column "attributes"`},
		{"empty attr name", "serial,attr.\n", `line 1: unknown column "attr."`},
		{"unnamed column", "serial,,model\n", "line 1: header column 2 has no name"},
		{"alias twice", "serial,serialNumber\n", `line 1: columns "serial" and "serialNumber" say the same thing`},
		{"attr twice", "serial,attr.x,ATTR.X\n", `line 1: columns "attr.x" and "ATTR.X" say the same thing`},
		{"no serial column", "\ufeff\n\nmac,model\n", "line 3: no serialNumber column: every device needs its serial number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(t, CSV, tt.input, Options{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Fatalf("error %v, want %q", err, tt.err)
			}
		})
	}
}

func TestReadJSONLines(t *testing.T) {
	tests := []struct {
		name  string
		input string
		opts  Options
		want  []want
	}{{
		name: "every field",
		input: `{"serialNumber":"SN-1","macAddresses":["AA:BB:CC:DD:EE:01","aabbccddee02"],"model":"X1","manufacturer":"Acme",` +
			`"displayName":"Speaker","thingType":"gateway","firmwareVersion":"2.0","location":"hall","externalId":"e1",` +
			`"attributes":{"color":"red","big":12345678901234567890,"ok":true,"tags":["a"]}}` + "\n",
		want: []want{{line: 1, thing: &store.Thing{
			SerialNumber: "SN-1", MACAddresses: []string{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"}, Model: "X1", Manufacturer: "Acme",
			DisplayName: "Speaker", Type: store.ThingGateway, FirmwareVersion: "2.0", Location: "hall", ExternalID: "e1",
			Attributes: map[string]any{"color": "red", "big": json.Number("12345678901234567890"), "ok": true, "tags": []any{"a"}},
		}}},
	}, {
		name:  "aliases, MACs as one string, null as absent, defaults",
		input: `{"Serial":"SN-1","mac":"aa:bb:cc:dd:ee:01 aa:bb:cc:dd:ee:02","model":null}` + "\n",
		opts:  Options{Manufacturer: "Acme", Model: "M1"},
		want: []want{{line: 1, thing: &store.Thing{SerialNumber: "SN-1", Manufacturer: "Acme", Model: "M1",
			MACAddresses: []string{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"}}}},
	}, {
		name: "bad types",
		input: `{"serialNumber":123}` + "\n" +
			`{"serialNumber":"SN-2","macAddresses":[1]}` + "\n" +
			`{"serialNumber":"SN-3","attributes":["x"]}` + "\n" +
			`{"serialNumber":"SN-4","location":{"room":"hall"}}` + "\n" +
			`{"serialNumber":"SN-5","model":true}` + "\n" +
			`["SN-6"]` + "\n" +
			`null` + "\n",
		want: []want{
			{line: 1, err: "line 1: serialNumber: want a string, got a number"},
			{line: 2, err: "line 2: macAddresses: want a string or an array of strings"},
			{line: 3, err: "line 3: attributes: want an object of name: value"},
			{line: 4, err: "line 4: location: want a string, got an object"},
			{line: 5, err: "line 5: model: want a string, got a boolean"},
			{line: 6, err: "line 6: want a JSON object, got array"},
			{line: 7, err: "line 7: want a JSON object, got null"},
		},
	}, {
		name: "bad MACs, unknown fields, duplicates, missing serial",
		input: `{"serialNumber":"SN-1","mac":["zz:bb:cc:dd:ee:ff"]}` + "\n" +
			`{"serialNumber":"SN-2","colour":"red"}` + "\n" +
			`{"serialNumber":"SN-3","attr.color":"red"}` + "\n" +
			`{"serial":"SN-4","serialNumber":"SN-4"}` + "\n" +
			`{"model":"M1"}` + "\n" +
			`{"serialNumber":""}` + "\n",
		want: []want{
			{line: 1, err: `line 1: mac: "zz:bb:cc:dd:ee:ff" is not a MAC address (want 6 or 8 hex octets such as aa:bb:cc:dd:ee:ff)`},
			{line: 2, err: "line 2: colour: unknown field (want serialNumber, macAddresses, model, manufacturer, displayName, thingType, firmwareVersion, location, externalId or attributes)"},
			{line: 3, err: "line 3: attr.color: unknown field (want serialNumber, macAddresses, model, manufacturer, displayName, thingType, firmwareVersion, location, externalId or attributes)"},
			{line: 4, err: `line 4: serialNumber: given twice (also as "serial")`},
			{line: 5, err: "line 5: serialNumber: is required: the serial number identifies the unit"},
			{line: 6, err: "line 6: serialNumber: is required: the serial number identifies the unit"},
		},
	}, {
		name:  "malformed JSON, then reading goes on",
		input: `{"serialNumber":"SN-1"` + "\n" + `{"serialNumber":"SN-2"} x` + "\n" + `{"serialNumber":"SN-3"}`,
		want: []want{
			{line: 1, err: "line 1: malformed JSON: unexpected end of JSON input"},
			{line: 2, err: "line 2: malformed JSON: invalid character 'x' after top-level value"},
			{line: 3, thing: &store.Thing{SerialNumber: "SN-3"}},
		},
	}, {
		name:  "BOM, CRLF and empty lines",
		input: "\ufeff{\"serialNumber\":\"SN-1\"}\r\n\r\n   \n{\"serialNumber\":\"SN-2\"}\r\n\n",
		want: []want{
			{line: 1, thing: &store.Thing{SerialNumber: "SN-1"}},
			{line: 4, thing: &store.Thing{SerialNumber: "SN-2"}},
		},
	}, {
		name:  "a line too long is rejected alone",
		input: `{"serialNumber":"SN-1","displayName":"` + strings.Repeat("x", maxLine) + `"}` + "\n" + `{"serialNumber":"SN-2"}` + "\n",
		want: []want{
			{line: 1, err: "line 1: longer than 1048576 bytes"},
			{line: 2, thing: &store.Thing{SerialNumber: "SN-2"}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := readAll(t, JSONLines, tt.input, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			check(t, rows, tt.want)
		})
	}
}

func TestReadCSVRunawayQuote(t *testing.T) {
	input := "serial,displayName\nSN-1,ok\nSN-2,\"open quote\n" + strings.Repeat("x,y\n", maxLine/4+1) + "SN-3,z\n"
	rows, err := readAll(t, CSV, input, Options{})
	if err == nil || !strings.Contains(err.Error(), "a CSV record longer than 1048576 bytes: is a quote left open?") {
		t.Fatalf("error %v, want a runaway record", err)
	}
	if len(rows) != 1 || rows[0].Thing == nil {
		t.Fatalf("rows before the runaway record: %+v", rows)
	}
}

func TestOffset(t *testing.T) {
	for _, tt := range []struct {
		format Format
		input  string
	}{
		{CSV, "\ufeffserial\r\nSN-1\r\n\r\nSN-2"},
		{JSONLines, "\ufeff{\"serial\":\"SN-1\"}\r\n\r\n{\"serial\":\"SN-2\"}"},
	} {
		rd, err := NewReader(strings.NewReader(tt.input), Options{Format: tt.format})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Read(); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Read(); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Read(); err != io.EOF {
			t.Fatalf("%s: %v, want EOF", tt.format, err)
		}
		if got := rd.Offset(); got != int64(len(tt.input)) {
			t.Errorf("%s: offset %d, want %d", tt.format, got, len(tt.input))
		}
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]Format{"a.csv": CSV, "B.CSV": CSV, "dir.x/a.jsonl": JSONLines, "a.ndjson": JSONLines} {
		if got, err := FormatOf(name); err != nil || got != want {
			t.Errorf("FormatOf(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"a.json", "a", "csv"} {
		if _, err := FormatOf(name); err == nil {
			t.Errorf("FormatOf(%q): no error", name)
		}
	}
	if _, err := NewReader(strings.NewReader(""), Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := NewReader(strings.NewReader(""), Options{}); err == nil {
		t.Error("no format: no error")
	}
}

// fuzzRows checks what every parser must guarantee: no panic, and every row is
// either a thing with a serial number or an error with a line number.
func fuzzRows(t *testing.T, format Format, data string) {
	rd, err := NewReader(strings.NewReader(data), Options{Format: format})
	if err != nil {
		return
	}
	prev := int64(0)
	for {
		row, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("Read: %v (a malformed row must be a row error)", err)
		}
		if (row.Thing == nil) == (row.Err == nil) {
			t.Fatalf("row %+v: want exactly one of Thing and Err", row)
		}
		if row.Line <= prev {
			t.Fatalf("line %d after line %d", row.Line, prev)
		}
		prev = row.Line
		if row.Thing != nil && row.Thing.SerialNumber == "" {
			t.Fatalf("line %d: a thing without a serial number", row.Line)
		}
		if row.Err != nil && row.Err.Line != row.Line {
			t.Fatalf("row at line %d has its error at line %d", row.Line, row.Err.Line)
		}
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add("serialNumber,mac,model,manufacturer,attr.x\nSN-1,aa:bb:cc:dd:ee:ff,M,A,1\n")
	f.Add("\ufeffserial,displayName\r\n\"SN,1\",\"a\"\"b\nc\"\r\n,\r\nSN-2,x,y\n")
	f.Add("serial\nSN-\"1\n\"unterminated\n")
	f.Add("serial,mac\nSN-1,zz;aa-bb-cc-dd-ee-ff 0011.2233.4455\n")
	f.Fuzz(func(t *testing.T, data string) { fuzzRows(t, CSV, data) })
}

func FuzzParseJSONL(f *testing.F) {
	f.Add(`{"serialNumber":"SN-1","macAddresses":["aa:bb:cc:dd:ee:ff"],"attributes":{"n":1}}` + "\n")
	f.Add("\ufeff{\"serial\":\"SN-1\",\"mac\":\"aabbccddeeff\"}\r\n\r\n[1]\nnull\n{\"serial\":1}")
	f.Add(`{"serialNumber":"SN-1","colour":"red"}` + "\n" + `{"serialNumber":"SN-1"`)
	f.Fuzz(func(t *testing.T, data string) { fuzzRows(t, JSONLines, data) })
}
