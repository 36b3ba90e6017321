package main

import (
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

// explainStoreErr turns store sentinels into messages that say what to do.
func explainStoreErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%s is already taken: %w", what, err)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%s does not exist (check the ID with `thingid devices list`): %w", what, err)
	}
	return err
}
