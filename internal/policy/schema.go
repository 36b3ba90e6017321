package policy

import (
	_ "embed"
	"fmt"

	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// SchemaText is the Cedar schema every policy is validated against, the
// compiled rules and the administrators' raw policies alike.
//
//go:embed schema.cedarschema
var SchemaText string

// Entity types and action names of the schema.
const (
	typeHousehold = "Household"
	typeRole      = "Role"
	typeRoom      = "Room"
	typeModel     = "Model"
	typeUser      = "User"
	typeThing     = "Thing"
	typeAction    = "Action"
)

// validator checks policies against SchemaText in strict mode. cedar-go
// v1.9 ships its validator under x/exp: experimental in API, but a port of
// the Rust validator tested against the same corpus.
var validator = mustValidator()

func mustValidator() *validate.Validator {
	var s schema.Schema
	s.SetFilename("schema.cedarschema")
	if err := s.UnmarshalCedar([]byte(SchemaText)); err != nil {
		panic(fmt.Sprintf("policy: the embedded schema does not parse: %v", err))
	}
	rs, err := s.Resolve()
	if err != nil {
		panic(fmt.Sprintf("policy: the embedded schema does not resolve: %v", err))
	}
	return validate.New(rs, validate.WithStrict())
}
