package store

// FieldType says how a field compares and sorts.
type FieldType int

const (
	// String compares case-sensitively.
	String FieldType = iota
	// CIString compares case-insensitively (userName, displayName, emails).
	CIString
	Bool
	// Time compares chronologically; values are time.Time.
	Time
	// Dynamic holds any JSON value (free attributes of things).
	Dynamic
)

// Field describes one filterable, sortable field of an identity kind.
// Multi fields hold several elements; a Compare on a Multi field itself tests the
// elements' "value". Sub lists the sub-fields of complex elements usable in Any.
type Field struct {
	Type  FieldType
	Multi bool
	Sub   map[string]FieldType
}

var multiValueSub = map[string]FieldType{"value": CIString, "type": String, "display": String, "primary": Bool}

// Common fields of every kind.
var commonFields = map[string]Field{
	"id":                {Type: String},
	"externalId":        {Type: String},
	"meta.created":      {Type: Time},
	"meta.lastModified": {Type: Time},
}

// UserFields are the logical fields of users usable in Query.
var UserFields = with(commonFields, map[string]Field{
	"userName":             {Type: CIString},
	"displayName":          {Type: CIString},
	"name.formatted":       {Type: CIString},
	"name.familyName":      {Type: CIString},
	"name.givenName":       {Type: CIString},
	"name.middleName":      {Type: CIString},
	"name.honorificPrefix": {Type: CIString},
	"name.honorificSuffix": {Type: CIString},
	"emails":               {Type: CIString, Multi: true, Sub: multiValueSub},
	"phoneNumbers":         {Type: String, Multi: true, Sub: multiValueSub},
	"locale":               {Type: String},
	"timezone":             {Type: String},
	"status":               {Type: String},
	"emailVerified":        {Type: Bool},
	// groups: a Compare on it tests the IDs of groups the user is a direct member of.
	"groups": {Type: String, Multi: true, Sub: map[string]FieldType{"value": String}},
})

// ThingFields are the logical fields of things usable in Query. Free attributes are
// addressed as "attributes.<name>" (Dynamic) and are not listed here.
var ThingFields = with(commonFields, map[string]Field{
	"displayName":     {Type: CIString},
	"thingType":       {Type: String},
	"manufacturer":    {Type: String},
	"model":           {Type: String},
	"serialNumber":    {Type: String},
	"firmwareVersion": {Type: String},
	"location":        {Type: String},
	"status":          {Type: String},
	// macAddresses holds normalized MACs; compare with normalized values.
	"macAddresses": {Type: CIString, Multi: true, Sub: map[string]FieldType{"value": CIString}},
	// owners: a Compare on it tests the IDs of users owning the thing.
	"owners": {Type: String, Multi: true, Sub: map[string]FieldType{"value": String}},
	"groups": {Type: String, Multi: true, Sub: map[string]FieldType{"value": String}},
})

// AttributePrefix addresses a free attribute of a thing: "attributes.color".
const AttributePrefix = "attributes."

// GroupFields are the logical fields of groups usable in Query.
var GroupFields = with(commonFields, map[string]Field{
	"displayName": {Type: CIString},
	// members: "value" is the member's ID, "type" its Kind.
	"members": {Type: String, Multi: true, Sub: map[string]FieldType{"value": String, "type": String}},
})

func with(base, extra map[string]Field) map[string]Field {
	m := make(map[string]Field, len(base)+len(extra))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}
