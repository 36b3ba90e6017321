package mqtttest

import (
	"runtime"
	"strings"
)

// Serving counts this process's goroutines that serve an MQTT connection
// after its CONNECT (the core's readers, reading or waiting to read): a
// parked, idle connection has none.
func Serving() int {
	buf := make([]byte, 8<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "mqtt.(*conn).run(") || strings.Contains(g, "mqtt.(*conn).waitAndRun(") {
			count++
		}
	}
	return count
}
