package main

import (
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

// explainStoreErr turns store sentinels into messages that say what to do;
// list is the command that lists what exists.
func explainStoreErr(err error, what, list string) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%s is already taken (`%s` shows what exists): %w", what, list, err)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%s does not exist (`%s` shows what does): %w", what, list, err)
	}
	return err
}
