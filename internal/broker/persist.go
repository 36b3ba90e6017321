package broker

import (
	"fmt"
	"path/filepath"

	"github.com/thingid/thingid/internal/mqtt"
)

// sessionsFile is the file in the data directory that keeps retained
// messages and persistent sessions (MQTT 3.1.1 clean session 0, MQTT 5
// session expiry > 0), written by the core's Bolt store. mqtt.db, the
// mochi-based broker's file, has another layout and is left alone: its
// sessions are not carried over (docs/broker.md).
const sessionsFile = "mqtt-sessions.db"

func openPersistence(dir string) (*mqtt.Bolt, error) {
	st, err := mqtt.OpenBolt(dir, sessionsFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt.dir: %w", err)
	}
	return st, nil
}

// CopySessions copies the retained messages and persistent sessions of
// mqtt.dir into a file of the same name in dstDir when no broker has them
// open (mqtt.ErrBoltHeld otherwise).
func CopySessions(dir, dstDir string) error {
	return mqtt.CopyBolt(filepath.Join(dir, sessionsFile), filepath.Join(dstDir, sessionsFile))
}
