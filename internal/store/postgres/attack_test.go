package postgres_test

import (
	"testing"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/storetest"
)

func TestAttack(t *testing.T) {
	storetest.Attack(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}
