package scim

import (
	"encoding/json"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// Schema URNs served (RFC 7643 §8.7, RFC 9944 §3).
const (
	userURN      = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupURN     = "urn:ietf:params:scim:schemas:core:2.0:Group"
	deviceURN    = "urn:ietf:params:scim:schemas:core:2.0:Device"
	thingExtURN  = "urn:thingid:params:scim:schemas:extension:thing:2.0:Device"
	listURN      = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	patchURN     = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	searchURN    = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
	bulkReqURN   = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
	bulkRespURN  = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
	spConfigURN  = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	resTypeURN   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaURN    = "urn:ietf:params:scim:schemas:core:2.0:Schema"
	prefix       = "/scim/v2"
	mediaType    = "application/scim+json"
	maxFilterLen = 4096
)

// Attribute data types, RFC 7643 §2.3.
const (
	tString   = "string"
	tBool     = "boolean"
	tDateTime = "dateTime"
	tRef      = "reference"
	tComplex  = "complex"
)

// Mutability and returned values, RFC 7643 §7.
const (
	readOnly  = "readOnly"
	readWrite = "readWrite"
	writeOnly = "writeOnly"

	retAlways  = "always"
	retNever   = "never"
	retDefault = "default"
)

// attr is one attribute definition. The same table answers /Schemas, validates
// request bodies, enforces mutability and returned rules, drives projection and
// maps filter and sort attributes onto store fields, so no rule is written twice.
type attr struct {
	Name       string
	Type       string
	Multi      bool
	Desc       string
	Required   bool
	CaseExact  bool
	Mutability string
	Returned   string
	Uniqueness string
	RefTypes   []string
	Canonical  []string
	Sub        []*attr

	// field is the store field filters and sortBy compile to ("" = not filterable).
	field string
	// filterValue converts a filter literal to the store's value for this attribute.
	filterValue func(v any) (any, error)
	// open marks a complex attribute whose sub-attributes are free (a thing's
	// attributes): any name is accepted and maps to store.AttributePrefix+name.
	open bool
}

func (a *attr) sub(name string) *attr {
	for _, s := range a.Sub {
		if strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return nil
}

// MarshalJSON writes the RFC 7643 §7 attribute definition.
func (a *attr) MarshalJSON() ([]byte, error) {
	type def struct {
		Name            string   `json:"name"`
		Type            string   `json:"type"`
		MultiValued     bool     `json:"multiValued"`
		Description     string   `json:"description"`
		Required        bool     `json:"required"`
		CaseExact       bool     `json:"caseExact"`
		Mutability      string   `json:"mutability"`
		Returned        string   `json:"returned"`
		Uniqueness      string   `json:"uniqueness"`
		ReferenceTypes  []string `json:"referenceTypes,omitempty"`
		CanonicalValues []string `json:"canonicalValues,omitempty"`
		SubAttributes   []*attr  `json:"subAttributes,omitempty"`
	}
	d := def{a.Name, a.Type, a.Multi, a.Desc, a.Required, a.CaseExact, a.Mutability, a.Returned,
		a.Uniqueness, a.RefTypes, a.Canonical, a.Sub}
	if d.Mutability == "" {
		d.Mutability = readWrite
	}
	if d.Returned == "" {
		d.Returned = retDefault
	}
	if d.Uniqueness == "" {
		d.Uniqueness = "none"
	}
	return json.Marshal(d)
}

func (a *attr) readOnly() bool { return a.Mutability == readOnly }

// schema is a core schema or extension (RFC 7643 §7).
type schema struct {
	ID    string
	Name  string
	Desc  string
	Attrs []*attr
}

func (s *schema) attr(name string) *attr {
	for _, a := range s.Attrs {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

// str builds a simple string attribute; the options after it are applied in order.
func str(name, desc, field string, opts ...func(*attr)) *attr {
	a := &attr{Name: name, Type: tString, Desc: desc, field: field}
	for _, o := range opts {
		o(a)
	}
	return a
}

func required(a *attr)  { a.Required = true }
func caseExact(a *attr) { a.CaseExact = true }
func ro(a *attr)        { a.Mutability = readOnly }
func unique(a *attr)    { a.Uniqueness = "server" }

// activeAttr maps SCIM's boolean "active" onto store.Status.
func activeAttr(desc string) *attr {
	return &attr{Name: "active", Type: tBool, Desc: desc, field: "status",
		filterValue: func(v any) (any, error) {
			b, ok := v.(bool)
			if !ok {
				return nil, badFilter("active: compare with true or false")
			}
			return string(statusOf(b)), nil
		}}
}

func statusOf(active bool) store.Status {
	if active {
		return store.StatusActive
	}
	return store.StatusDisabled
}

// multiValue is the RFC 7643 §2.4 multi-valued complex attribute (emails, phone numbers).
func multiValue(name, desc string, types ...string) *attr {
	return &attr{Name: name, Type: tComplex, Multi: true, Desc: desc, field: name, Sub: []*attr{
		str("value", "The value.", "value"),
		str("display", "A human-readable name, primarily used for display purposes.", "display"),
		str("type", "A label indicating the attribute's function.", "type", func(a *attr) { a.Canonical = types }),
		{Name: "primary", Type: tBool, Desc: "Whether this is the primary value; at most one is (RFC 7643 §2.4).", field: "primary"},
	}}
}

// refList is a read-only list of references to other resources (groups, owners).
func refList(name, desc string, refTypes ...string) *attr {
	return &attr{Name: name, Type: tComplex, Multi: true, Desc: desc, Mutability: readOnly, field: name, Sub: []*attr{
		str("value", "The identifier of the referenced resource.", "value", caseExact, ro),
		{Name: "$ref", Type: tRef, Desc: "The URI of the referenced resource.", RefTypes: refTypes, Mutability: readOnly},
		str("display", "A human-readable name of the referenced resource.", "", ro),
	}}
}

// common holds the attributes every resource has (RFC 7643 §3.1); /Schemas does not
// list them but filters, sorting, projection and mutability rules use them.
var common = []*attr{
	{Name: "id", Type: tString, CaseExact: true, Mutability: readOnly, Returned: retAlways, Uniqueness: "server", field: "id",
		Desc: "Unique identifier of the resource, assigned by the service provider."},
	str("externalId", "Identifier of the resource as defined by the provisioning client.", "externalId", caseExact),
	{Name: "meta", Type: tComplex, Mutability: readOnly, Desc: "Resource metadata.", Sub: []*attr{
		str("resourceType", "The name of the resource type.", "", caseExact, ro),
		{Name: "created", Type: tDateTime, Mutability: readOnly, field: "meta.created", Desc: "When the resource was added."},
		{Name: "lastModified", Type: tDateTime, Mutability: readOnly, field: "meta.lastModified", Desc: "When the resource was last changed."},
		{Name: "location", Type: tRef, Mutability: readOnly, Desc: "The URI of the resource."},
		str("version", "The entity tag of the resource (RFC 7644 §3.14).", "", caseExact, ro),
	}},
}

var userSchema = &schema{ID: userURN, Name: "User", Desc: "User Account (RFC 7643 §4.1)", Attrs: []*attr{
	str("userName", "Unique identifier for the User, used to sign in. REQUIRED.", "userName", required, unique),
	{Name: "name", Type: tComplex, Desc: "The components of the user's real name.", Sub: []*attr{
		str("formatted", "The full name, formatted for display.", "name.formatted"),
		str("familyName", "The family name.", "name.familyName"),
		str("givenName", "The given name.", "name.givenName"),
		str("middleName", "The middle name(s).", "name.middleName"),
		str("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'.", "name.honorificPrefix"),
		str("honorificSuffix", "The honorific suffix(es), e.g. 'III'.", "name.honorificSuffix"),
	}},
	str("displayName", "The name of the User, suitable for display to end-users.", "displayName"),
	multiValue("emails", "Email addresses for the user.", "work", "home", "other"),
	multiValue("phoneNumbers", "Phone numbers for the user.", "work", "home", "mobile", "fax", "pager", "other"),
	str("locale", "Default location for localization, a language tag such as en-US.", "locale"),
	str("timezone", "The User's time zone in IANA format, e.g. Europe/Berlin.", "timezone"),
	activeAttr("The User's administrative status."),
	{Name: "password", Type: tString, Mutability: writeOnly, Returned: retNever,
		Desc: "The User's cleartext password, checked against the password policy and stored hashed; never returned."},
	groupsAttr("A list of groups the user is a direct member of; change membership through the Group resource."),
}}

func groupsAttr(desc string) *attr {
	a := refList("groups", desc, "Group")
	a.Sub = append(a.Sub, str("type", "How the membership is derived; always direct.", "", ro, func(a *attr) { a.Canonical = []string{"direct"} }))
	return a
}

var groupSchema = &schema{ID: groupURN, Name: "Group", Desc: "Group (RFC 7643 §4.2)", Attrs: []*attr{
	str("displayName", "A human-readable name for the Group. REQUIRED.", "displayName", required, unique),
	{Name: "members", Type: tComplex, Multi: true, Desc: "A list of members of the Group: users, devices or groups.", field: "members", Sub: []*attr{
		str("value", "Identifier of the member of this Group.", "value", caseExact, required),
		{Name: "$ref", Type: tRef, RefTypes: []string{"User", "Group", "Device"}, Desc: "The URI of the member resource."},
		str("type", "The type of the member resource.", "type", caseExact, func(a *attr) {
			a.Canonical = []string{"User", "Group", "Device"}
			a.filterValue = memberTypeFilter
		}),
		str("display", "A human-readable name of the member.", "", ro),
	}},
}}

var deviceSchema = &schema{ID: deviceURN, Name: "Device", Desc: "Device (RFC 9944 §3)", Attrs: []*attr{
	str("displayName", "A human-readable name of the device.", "displayName"),
	activeAttr("The device's administrative status; thingid treats an omitted value as true."),
	groupsAttr("A list of groups the device is a direct member of."),
}}

var thingExtSchema = &schema{ID: thingExtURN, Name: "Thing", Desc: "thingid device attributes", Attrs: []*attr{
	str("serialNumber", "The manufacturer's serial number; (manufacturer, model, serialNumber) is unique.", "serialNumber", caseExact),
	{Name: "macAddresses", Type: tString, Multi: true, Uniqueness: "server", field: "macAddresses",
		filterValue: normalizeMACFilter,
		Desc:        "MAC addresses (EUI-48 or EUI-64), normalized to lower-case colon form; unique across all devices."},
	str("thingType", "What kind of thing this is.", "thingType", caseExact, func(a *attr) { a.Canonical = []string{"device", "service", "gateway"} }),
	str("manufacturer", "The device manufacturer.", "manufacturer", caseExact),
	str("model", "The device model.", "model", caseExact),
	str("firmwareVersion", "The installed firmware version.", "firmwareVersion", caseExact),
	str("location", "Where the device is installed.", "location", caseExact),
	{Name: "attributes", Type: tComplex, open: true,
		Desc: "Free-form attributes: names start with a letter, values are any JSON values; filter as attributes.<name>."},
	func() *attr {
		a := refList("owners", "Users owning the device. Read-only in POST and PUT; PATCH add/remove of owners (value: a user id) links and unlinks owners.", "User")
		a.Sub[0].Required = true
		return a
	}(),
	{Name: "certificates", Type: tComplex, Multi: true, Mutability: readOnly, Desc: "Certificates issued to or registered for the device.", Sub: []*attr{
		str("fingerprintSha256", "Lower-case hex SHA-256 of the DER certificate.", "", caseExact, ro),
		str("subject", "The certificate subject.", "", caseExact, ro),
		str("issuer", "The certificate issuer.", "", caseExact, ro),
		{Name: "notAfter", Type: tDateTime, Mutability: readOnly, Desc: "The end of the certificate's validity."},
	}},
}}

// resourceType is one of the RFC 7643 §6 resource types served.
type resourceType struct {
	Name     string // "User"
	Endpoint string // "Users"
	Desc     string
	Core     *schema
	Ext      []*schema
}

func (rt *resourceType) schemas() []*schema {
	return append([]*schema{rt.Core}, rt.Ext...)
}

func (rt *resourceType) ext(urn string) *schema {
	for _, s := range rt.Ext {
		if strings.EqualFold(s.ID, urn) {
			return s
		}
	}
	return nil
}

// lookup finds a top-level attribute by name in the core schema, the common
// attributes or an extension; urn restricts the search to one schema. It returns
// the schema URN the attribute lives under ("" for core and common attributes).
func (rt *resourceType) lookup(urn, name string) (string, *attr) {
	if urn == "" || strings.EqualFold(urn, rt.Core.ID) {
		if a := rt.Core.attr(name); a != nil {
			return "", a
		}
		for _, a := range common {
			if strings.EqualFold(a.Name, name) {
				return "", a
			}
		}
		if urn != "" {
			return "", nil
		}
	}
	for _, s := range rt.Ext {
		if urn != "" && !strings.EqualFold(urn, s.ID) {
			continue
		}
		if a := s.attr(name); a != nil {
			return s.ID, a
		}
	}
	return "", nil
}

var (
	userType   = &resourceType{Name: "User", Endpoint: "Users", Desc: "User Account", Core: userSchema}
	groupType  = &resourceType{Name: "Group", Endpoint: "Groups", Desc: "Group", Core: groupSchema}
	deviceType = &resourceType{Name: "Device", Endpoint: "Devices", Desc: "Device (RFC 9944)", Core: deviceSchema,
		Ext: []*schema{thingExtSchema}}
	resourceTypes = []*resourceType{userType, groupType, deviceType}
)
