package scim

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

func TestTranslateFilter(t *testing.T) {
	created := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cmp := func(field string, op store.Op, v any) store.Expr {
		return store.Compare{Field: field, Op: op, Value: v}
	}
	tests := []struct {
		rt   *resourceType
		in   string
		want store.Expr
	}{
		{userType, `userName eq "bjensen"`, cmp("userName", store.OpEq, "bjensen")},
		{userType, `USERNAME Ne "x"`, cmp("userName", store.OpNe, "x")},
		{userType, `urn:ietf:params:scim:schemas:core:2.0:User:name.givenName co "ar"`, cmp("name.givenName", store.OpCo, "ar")},
		{userType, `displayName sw "B"`, cmp("displayName", store.OpSw, "B")},
		{userType, `displayName ew "n"`, cmp("displayName", store.OpEw, "n")},
		{userType, `meta.created gt "2024-05-01T12:00:00Z"`, cmp("meta.created", store.OpGt, created)},
		{userType, `meta.lastModified le "2024-05-01T12:00:00Z"`, cmp("meta.lastModified", store.OpLe, created)},
		{userType, `active eq true`, cmp("status", store.OpEq, "active")},
		{userType, `active ne false`, cmp("status", store.OpNe, "disabled")},
		{userType, `externalId pr`, store.Present{Field: "externalId"}},
		{userType, `emails co "@example.com"`, cmp("emails", store.OpCo, "@example.com")},
		{userType, `emails.type eq "work"`, store.Any{Field: "emails", Where: cmp("type", store.OpEq, "work")}},
		{userType, `emails[type eq "work" and value co "@x"]`, store.Any{Field: "emails", Where: store.And{
			Left: cmp("type", store.OpEq, "work"), Right: cmp("value", store.OpCo, "@x")}}},
		{userType, `emails[primary eq true]`, store.Any{Field: "emails", Where: cmp("primary", store.OpEq, true)}},
		{userType, `groups eq "g1"`, cmp("groups", store.OpEq, "g1")},
		{userType, `not (userName pr) or locale eq "en"`, store.Or{
			Left: store.Not{X: store.Present{Field: "userName"}}, Right: cmp("locale", store.OpEq, "en")}},
		{groupType, `members[value eq "u1" and type eq "Device"]`, store.Any{Field: "members", Where: store.And{
			Left: cmp("value", store.OpEq, "u1"), Right: cmp("type", store.OpEq, "thing")}}},
		{groupType, `members.value eq "u1"`, store.Any{Field: "members", Where: cmp("value", store.OpEq, "u1")}},
		{deviceType, `serialNumber eq "SN1"`, cmp("serialNumber", store.OpEq, "SN1")},
		{deviceType, `urn:thingid:params:scim:schemas:extension:thing:2.0:Device:model eq "M"`, cmp("model", store.OpEq, "M")},
		{deviceType, `macAddresses eq "AA-BB-CC-DD-EE-FF"`, cmp("macAddresses", store.OpEq, "aa:bb:cc:dd:ee:ff")},
		{deviceType, `macAddresses[value sw "AA:BB"]`, store.Any{Field: "macAddresses", Where: cmp("value", store.OpSw, "aa:bb")}},
		{deviceType, `attributes.color eq "red"`, cmp("attributes.color", store.OpEq, "red")},
		{deviceType, `attributes.watts gt 5`, cmp("attributes.watts", store.OpGt, 5.0)},
		{deviceType, `owners.value eq "u1"`, store.Any{Field: "owners", Where: cmp("value", store.OpEq, "u1")}},
		{deviceType, `owners eq "u1"`, cmp("owners", store.OpEq, "u1")},
		{deviceType, `active eq false and displayName eq null`, store.And{
			Left: cmp("status", store.OpEq, "disabled"), Right: cmp("displayName", store.OpEq, nil)}},
	}
	for _, tt := range tests {
		f, err := parseFilter(tt.in)
		if err != nil {
			t.Errorf("%s: parse: %v", tt.in, err)
			continue
		}
		got, err := translateFilter(tt.rt, f)
		if err != nil {
			t.Errorf("%s %s: %v", tt.rt.Name, tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %s:\n got %#v\nwant %#v", tt.rt.Name, tt.in, got, tt.want)
		}
	}
}

func TestTranslateFilterErrors(t *testing.T) {
	tests := []struct {
		rt       *resourceType
		in, want string
	}{
		{userType, `title eq "x"`, `unknown attribute "title"`},
		{userType, `serialNumber eq "x"`, `unknown attribute "serialNumber"`},
		{userType, `urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "x"`, "unknown attribute"},
		{userType, `name eq "x"`, "name is complex"},
		{userType, `name.nickName eq "x"`, `unknown attribute "name.nickName"`},
		{userType, `password eq "x"`, `"password" cannot be filtered`},
		{userType, `active gt true`, "active is a boolean: use eq or ne"},
		{userType, `active eq "yes"`, "is a boolean"},
		{userType, `active co true`, "is a boolean"},
		{userType, `userName eq 5`, "userName is a string"},
		{userType, `userName gt null`, "cannot compare with null"},
		{userType, `meta.created gt "yesterday"`, "not an RFC 3339 date-time"},
		{userType, `meta.created co "2024"`, "is a date-time"},
		{userType, `emails[nope eq "x"]`, "emails.nope is not a filterable attribute"},
		{userType, `emails[type.x eq "x"]`, "name a sub-attribute"},
		{userType, `userName[value eq "x"]`, "needs a filterable multi-valued attribute"},
		{groupType, `members.display eq "x"`, "cannot be filtered"},
		{groupType, `members[type eq "Robot"]`, `"Robot" is not one of`},
		{deviceType, `attributes eq "x"`, "name one of them"},
		{deviceType, `certificates.subject eq "x"`, "cannot be filtered"},
		{deviceType, `macAddresses[type eq "x"]`, "the only sub-attribute is value"},
	}
	for _, tt := range tests {
		f, err := parseFilter(tt.in)
		if err == nil {
			_, err = translateFilter(tt.rt, f)
		}
		var se *Error
		if !errors.As(err, &se) || se.ScimType != typeInvalidFilter || !strings.Contains(se.Detail, tt.want) {
			t.Errorf("%s %s: got %v, want invalidFilter containing %q", tt.rt.Name, tt.in, err, tt.want)
		}
	}
}

// TestFieldsInCatalog checks the attribute table against the store's field
// catalogs: every filterable attribute must name a field the backends know.
func TestFieldsInCatalog(t *testing.T) {
	catalogs := map[*resourceType]map[string]store.Field{
		userType: store.UserFields, groupType: store.GroupFields, deviceType: store.ThingFields,
	}
	for rt, fields := range catalogs {
		attrs := append([]*attr{}, common...)
		for _, s := range rt.schemas() {
			attrs = append(attrs, s.Attrs...)
		}
		for _, a := range attrs {
			if a.field != "" {
				f, ok := fields[a.field]
				if !ok {
					t.Errorf("%s.%s: field %q is not in the store catalog", rt.Name, a.Name, a.field)
					continue
				}
				if f.Multi != a.Multi {
					t.Errorf("%s.%s: multi-valued %v, store says %v", rt.Name, a.Name, a.Multi, f.Multi)
				}
				for _, s := range a.Sub {
					if s.field != "" && f.Sub != nil {
						if _, ok := f.Sub[s.field]; !ok {
							t.Errorf("%s.%s.%s: sub-field %q is not in the store catalog", rt.Name, a.Name, s.Name, s.field)
						}
					}
				}
			}
			if a.Type == tComplex && !a.Multi {
				for _, s := range a.Sub {
					if _, ok := fields[s.field]; s.field != "" && !ok {
						t.Errorf("%s.%s.%s: field %q is not in the store catalog", rt.Name, a.Name, s.Name, s.field)
					}
				}
			}
		}
	}
}

func TestListParams(t *testing.T) {
	n := func(i int) *int { return &i }
	tests := []struct {
		p                   listParams
		offset, limit       int
		sortBy              string
		desc                bool
		wantErr, errContain string
	}{
		{p: listParams{}, offset: 0, limit: 100},
		{p: listParams{StartIndex: -5, Count: n(-1)}, offset: 0, limit: 0},
		{p: listParams{StartIndex: 11, Count: n(10)}, offset: 10, limit: 10},
		{p: listParams{Count: n(5000)}, offset: 0, limit: 100},
		{p: listParams{SortBy: "name.familyName", SortOrder: "Descending"}, limit: 100, sortBy: "name.familyName", desc: true},
		{p: listParams{SortBy: "meta.created"}, limit: 100, sortBy: "meta.created"},
		{p: listParams{SortBy: "emails"}, wantErr: typeInvalidValue, errContain: "multi-valued"},
		{p: listParams{SortBy: "nope"}, wantErr: typeInvalidValue, errContain: "sortBy"},
		{p: listParams{SortOrder: "up"}, wantErr: typeInvalidValue, errContain: "sortOrder"},
	}
	for _, tt := range tests {
		q, err := tt.p.query(userType, 100)
		if tt.wantErr != "" {
			var se *Error
			if !errors.As(err, &se) || se.ScimType != tt.wantErr || !strings.Contains(se.Detail, tt.errContain) {
				t.Errorf("%+v: got %v, want %s containing %q", tt.p, err, tt.wantErr, tt.errContain)
			}
			continue
		}
		if err != nil || q.Offset != tt.offset || q.Limit != tt.limit || q.SortBy != tt.sortBy || q.Descending != tt.desc {
			t.Errorf("%+v: got %+v, %v", tt.p, q, err)
		}
	}
}
