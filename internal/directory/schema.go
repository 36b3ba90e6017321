package directory

import (
	"strings"
)

// The schema thingid publishes (RFC 4512 §4.1) in its subschema entry: the
// standard types of the entries it serves (RFC 4519, RFC 4524, RFC 2798,
// RFC 4530) and thingid's own, for what the standard device class lacks.
//
// thingid's own OIDs are under 1.3.6.1.4.1.32473, the enterprise number
// RFC 5612 reserves for examples in documentation: they must be replaced by
// thingid's own registered Private Enterprise Number (IANA) before a
// directory relies on them in production. The arc below it:
//
//	1.3.6.1.4.1.32473.1.1.n  attribute types
//	1.3.6.1.4.1.32473.1.2.n  object classes
const thingidArc = "1.3.6.1.4.1.32473.1"

// Syntaxes (RFC 4517 §3.3, RFC 4530 §2.1).
const (
	synDirectoryString = "1.3.6.1.4.1.1466.115.121.1.15"
	synIA5String       = "1.3.6.1.4.1.1466.115.121.1.26"
	synDN              = "1.3.6.1.4.1.1466.115.121.1.12"
	synOID             = "1.3.6.1.4.1.1466.115.121.1.38"
	synTelephone       = "1.3.6.1.4.1.1466.115.121.1.50"
	synTime            = "1.3.6.1.4.1.1466.115.121.1.24"
	synPrintable       = "1.3.6.1.4.1.1466.115.121.1.44"
	synUUID            = "1.3.6.1.1.16.1"
	synOctetString     = "1.3.6.1.4.1.1466.115.121.1.40"
)

// attributeType is one published attribute type.
type attributeType struct {
	oid         string
	names       []string
	sup         string
	equality    string
	ordering    string
	substr      string
	syntax      string
	single      bool
	noUserMod   bool
	operational bool // USAGE directoryOperation or dSAOperation: returned for "+"
	desc        string
}

// ci is the matching of a case-insensitive string.
func ci(oid string, names ...string) attributeType {
	return attributeType{oid: oid, names: names, equality: "caseIgnoreMatch", substr: "caseIgnoreSubstringsMatch", syntax: synDirectoryString}
}

func dnValued(oid string, names ...string) attributeType {
	return attributeType{oid: oid, names: names, equality: "distinguishedNameMatch", syntax: synDN}
}

func operational(a attributeType) attributeType {
	a.operational, a.noUserMod = true, true
	return a
}

var attributeTypes = []attributeType{
	{oid: "2.5.4.0", names: []string{"objectClass"}, equality: "objectIdentifierMatch", syntax: synOID},
	{oid: "2.5.4.41", names: []string{"name"}, equality: "caseIgnoreMatch", substr: "caseIgnoreSubstringsMatch", syntax: synDirectoryString},
	{oid: "2.5.4.3", names: []string{"cn", "commonName"}, sup: "name"},
	{oid: "2.5.4.4", names: []string{"sn", "surname"}, sup: "name"},
	{oid: "2.5.4.42", names: []string{"givenName", "gn"}, sup: "name"},
	{oid: "2.5.4.10", names: []string{"o", "organizationName"}, sup: "name"},
	{oid: "2.5.4.11", names: []string{"ou", "organizationalUnitName"}, sup: "name"},
	{oid: "2.5.4.7", names: []string{"l", "localityName"}, sup: "name"},
	ci("2.5.4.13", "description"),
	{oid: "2.5.4.5", names: []string{"serialNumber"}, equality: "caseIgnoreMatch", substr: "caseIgnoreSubstringsMatch", syntax: synPrintable},
	{oid: "2.5.4.20", names: []string{"telephoneNumber"}, equality: "telephoneNumberMatch", substr: "telephoneNumberSubstringsMatch", syntax: synTelephone},
	// Written (Add) and never read: a search returns no userPassword.
	{oid: "2.5.4.35", names: []string{"userPassword"}, equality: "octetStringMatch", syntax: synOctetString},
	dnValued("2.5.4.31", "member"),
	dnValued("2.5.4.32", "owner"),
	{oid: "0.9.2342.19200300.100.1.1", names: []string{"uid", "userid"}, equality: "caseIgnoreMatch", substr: "caseIgnoreSubstringsMatch", syntax: synDirectoryString},
	{oid: "0.9.2342.19200300.100.1.3", names: []string{"mail", "rfc822Mailbox"}, equality: "caseIgnoreIA5Match", substr: "caseIgnoreIA5SubstringsMatch", syntax: synIA5String},
	{oid: "0.9.2342.19200300.100.1.25", names: []string{"dc", "domainComponent"}, equality: "caseIgnoreIA5Match", substr: "caseIgnoreIA5SubstringsMatch", syntax: synIA5String, single: true},
	{oid: "2.16.840.1.113730.3.1.241", names: []string{"displayName"}, equality: "caseIgnoreMatch", substr: "caseIgnoreSubstringsMatch", syntax: synDirectoryString, single: true},
	{oid: "2.16.840.1.113730.3.1.39", names: []string{"preferredLanguage"}, equality: "caseIgnoreMatch", substr: "caseIgnoreSubstringsMatch", syntax: synDirectoryString, single: true},

	// thingid's device attributes (the auxiliary class thingidDevice).
	{oid: thingidArc + ".1.1", names: []string{"thingidMACAddress"}, equality: "caseIgnoreIA5Match", substr: "caseIgnoreIA5SubstringsMatch", syntax: synIA5String, desc: "a MAC address, lower-case and colon-separated"},
	{oid: thingidArc + ".1.2", names: []string{"thingidModel"}, equality: "caseExactMatch", substr: "caseExactSubstringsMatch", syntax: synDirectoryString, single: true},
	{oid: thingidArc + ".1.3", names: []string{"thingidManufacturer"}, equality: "caseExactMatch", substr: "caseExactSubstringsMatch", syntax: synDirectoryString, single: true},
	{oid: thingidArc + ".1.4", names: []string{"thingidFirmwareVersion"}, equality: "caseExactMatch", substr: "caseExactSubstringsMatch", syntax: synDirectoryString, single: true},
	{oid: thingidArc + ".1.5", names: []string{"thingidStatus"}, equality: "caseExactMatch", syntax: synDirectoryString, single: true, desc: "active or disabled"},
	{oid: thingidArc + ".1.6", names: []string{"thingidThingType"}, equality: "caseExactMatch", syntax: synDirectoryString, single: true, desc: "device, service or gateway"},

	// Operational attributes.
	operational(attributeType{oid: "1.3.6.1.1.16.4", names: []string{"entryUUID"}, equality: "UUIDMatch", ordering: "UUIDOrderingMatch", syntax: synUUID, single: true, desc: "the SCIM id"}),
	operational(attributeType{oid: "2.5.18.1", names: []string{"createTimestamp"}, equality: "generalizedTimeMatch", ordering: "generalizedTimeOrderingMatch", syntax: synTime, single: true}),
	operational(attributeType{oid: "2.5.18.2", names: []string{"modifyTimestamp"}, equality: "generalizedTimeMatch", ordering: "generalizedTimeOrderingMatch", syntax: synTime, single: true}),
	operational(attributeType{oid: "2.5.18.10", names: []string{"subschemaSubentry"}, equality: "distinguishedNameMatch", syntax: synDN, single: true}),
	operational(attributeType{oid: "1.2.840.113556.1.2.102", names: []string{"memberOf"}, equality: "distinguishedNameMatch", syntax: synDN, desc: "the groups the entry is a direct member of"}),
	operational(attributeType{oid: "2.5.21.5", names: []string{"attributeTypes"}, equality: "objectIdentifierFirstComponentMatch", syntax: "1.3.6.1.4.1.1466.115.121.1.3"}),
	operational(attributeType{oid: "2.5.21.6", names: []string{"objectClasses"}, equality: "objectIdentifierFirstComponentMatch", syntax: "1.3.6.1.4.1.1466.115.121.1.37"}),
	operational(attributeType{oid: "1.3.6.1.4.1.1466.101.120.16", names: []string{"ldapSyntaxes"}, equality: "objectIdentifierFirstComponentMatch", syntax: "1.3.6.1.4.1.1466.115.121.1.54"}),
	operational(attributeType{oid: "1.3.6.1.4.1.1466.101.120.5", names: []string{"namingContexts"}, syntax: synDN}),
	operational(attributeType{oid: "1.3.6.1.4.1.1466.101.120.13", names: []string{"supportedControl"}, syntax: synOID}),
	operational(attributeType{oid: "1.3.6.1.4.1.1466.101.120.7", names: []string{"supportedExtension"}, syntax: synOID}),
	operational(attributeType{oid: "1.3.6.1.4.1.1466.101.120.15", names: []string{"supportedLDAPVersion"}, syntax: "1.3.6.1.4.1.1466.115.121.1.27"}),
	operational(attributeType{oid: "1.3.6.1.4.1.1466.101.120.14", names: []string{"supportedSASLMechanisms"}, syntax: synDirectoryString}),
	operational(attributeType{oid: "1.3.6.1.1.4", names: []string{"vendorName"}, equality: "caseExactIA5Match", syntax: synDirectoryString, single: true}),
}

// objectClass is one published object class.
type objectClass struct {
	oid, name, sup, kind string // kind: ABSTRACT, STRUCTURAL or AUXILIARY
	must, may            []string
	desc                 string
}

var objectClasses = []objectClass{
	{oid: "2.5.6.0", name: "top", kind: "ABSTRACT", must: []string{"objectClass"}},
	{oid: "1.3.6.1.4.1.1466.101.120.111", name: "extensibleObject", sup: "top", kind: "AUXILIARY"},
	{oid: "2.5.20.1", name: "subschema", kind: "AUXILIARY", may: []string{"attributeTypes", "objectClasses", "ldapSyntaxes"}},
	{oid: "2.5.17.0", name: "subentry", sup: "top", kind: "STRUCTURAL", must: []string{"cn"}},
	{oid: "0.9.2342.19200300.100.4.13", name: "domain", sup: "top", kind: "STRUCTURAL", must: []string{"dc"}, may: []string{"description", "l", "o"}},
	{oid: "2.5.6.4", name: "organization", sup: "top", kind: "STRUCTURAL", must: []string{"o"}, may: []string{"description", "l"}},
	{oid: "2.5.6.5", name: "organizationalUnit", sup: "top", kind: "STRUCTURAL", must: []string{"ou"}, may: []string{"description", "l"}},
	{oid: "2.5.6.6", name: "person", sup: "top", kind: "STRUCTURAL", must: []string{"sn", "cn"}, may: []string{"userPassword", "telephoneNumber", "description"}},
	{oid: "2.5.6.7", name: "organizationalPerson", sup: "person", kind: "STRUCTURAL", may: []string{"l", "ou"}},
	{oid: "2.16.840.1.113730.3.2.2", name: "inetOrgPerson", sup: "organizationalPerson", kind: "STRUCTURAL", may: []string{"displayName", "givenName", "mail", "preferredLanguage", "uid"}},
	{oid: "2.5.6.14", name: "device", sup: "top", kind: "STRUCTURAL", must: []string{"cn"}, may: []string{"serialNumber", "owner", "ou", "o", "l", "description"}},
	{oid: thingidArc + ".2.1", name: "thingidDevice", sup: "top", kind: "AUXILIARY", may: []string{"thingidMACAddress", "thingidModel", "thingidManufacturer", "thingidFirmwareVersion", "thingidStatus", "thingidThingType", "displayName"}, desc: "what thingid knows of a thing beyond RFC 4519's device"},
	{oid: "2.5.6.11", name: "applicationProcess", sup: "top", kind: "STRUCTURAL", must: []string{"cn"}, may: []string{"ou", "l", "description"}},
	{oid: "2.5.6.9", name: "groupOfNames", sup: "top", kind: "STRUCTURAL", must: []string{"cn"}, may: []string{"member", "description", "owner", "ou", "o"}},
}

// ldapSyntaxes are the syntaxes of the published attribute types.
var ldapSyntaxes = [][2]string{
	{synDirectoryString, "Directory String"}, {synIA5String, "IA5 String"}, {synDN, "DN"},
	{synOID, "OID"}, {synTelephone, "Telephone Number"}, {synTime, "Generalized Time"},
	{synPrintable, "Printable String"}, {synUUID, "UUID"}, {synOctetString, "Octet String"},
	{"1.3.6.1.4.1.1466.115.121.1.27", "INTEGER"}, {"1.3.6.1.4.1.1466.115.121.1.3", "Attribute Type Description"},
	{"1.3.6.1.4.1.1466.115.121.1.37", "Object Class Description"}, {"1.3.6.1.4.1.1466.115.121.1.54", "LDAP Syntax Description"},
}

// String is a in RFC 4512 §4.1.2 form.
func (a attributeType) String() string {
	var b strings.Builder
	b.WriteString("( " + a.oid + " NAME " + qdescrs(a.names))
	if a.desc != "" {
		b.WriteString(" DESC '" + a.desc + "'")
	}
	for _, kv := range [][2]string{{"SUP", a.sup}, {"EQUALITY", a.equality}, {"ORDERING", a.ordering}, {"SUBSTR", a.substr}, {"SYNTAX", a.syntax}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + " " + kv[1])
		}
	}
	if a.single {
		b.WriteString(" SINGLE-VALUE")
	}
	if a.noUserMod {
		b.WriteString(" NO-USER-MODIFICATION")
	}
	if a.operational {
		b.WriteString(" USAGE directoryOperation")
	}
	b.WriteString(" )")
	return b.String()
}

// String is c in RFC 4512 §4.1.1 form.
func (c objectClass) String() string {
	var b strings.Builder
	b.WriteString("( " + c.oid + " NAME '" + c.name + "'")
	if c.desc != "" {
		b.WriteString(" DESC '" + c.desc + "'")
	}
	if c.sup != "" {
		b.WriteString(" SUP " + c.sup)
	}
	b.WriteString(" " + c.kind)
	if len(c.must) > 0 {
		b.WriteString(" MUST " + oids(c.must))
	}
	if len(c.may) > 0 {
		b.WriteString(" MAY " + oids(c.may))
	}
	b.WriteString(" )")
	return b.String()
}

func qdescrs(names []string) string {
	if len(names) == 1 {
		return "'" + names[0] + "'"
	}
	return "( '" + strings.Join(names, "' '") + "' )"
}

func oids(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return "( " + strings.Join(names, " $ ") + " )"
}

// attributes maps every lower-cased name of a published type to it.
var attributes = func() map[string]*attributeType {
	m := map[string]*attributeType{}
	for i := range attributeTypes {
		for _, n := range attributeTypes[i].names {
			m[strings.ToLower(n)] = &attributeTypes[i]
		}
		m[attributeTypes[i].oid] = &attributeTypes[i]
	}
	return m
}()

// typeOf is the published type of an attribute named as the directory
// names it (exact case) or as a client may (any case).
func typeOf(name string) *attributeType {
	if t, ok := attributesByName[name]; ok {
		return t
	}
	return attributes[strings.ToLower(name)]
}

// attributesByName maps every name of a published type, as written in the
// schema, to it: the names of the entries' attributes, found without
// lower-casing them.
var attributesByName = func() map[string]*attributeType {
	m := map[string]*attributeType{}
	for i := range attributeTypes {
		for _, n := range attributeTypes[i].names {
			m[n] = &attributeTypes[i]
		}
	}
	return m
}()

// subschemaDN is the DN of the subschema entry (RFC 4512 §4.2).
const subschemaDN = "cn=Subschema"

// subschema is the subschema entry: all its schema attributes are
// operational, so that `ldapsearch -b cn=subschema -s base +` reads them.
func subschema() entry {
	var at, oc, syn []string
	for _, a := range attributeTypes {
		at = append(at, a.String())
	}
	for _, c := range objectClasses {
		oc = append(oc, c.String())
	}
	for _, s := range ldapSyntaxes {
		syn = append(syn, "( "+s[0]+" DESC '"+s[1]+"' )")
	}
	return entry{dn: subschemaDN, attrs: []attribute{
		{"objectClass", []string{"top", "subentry", "subschema", "extensibleObject"}},
		{"cn", []string{"Subschema"}},
		{"attributeTypes", at},
		{"objectClasses", oc},
		{"ldapSyntaxes", syn},
	}}
}
