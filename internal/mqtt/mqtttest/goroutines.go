package mqtttest

import (
	"runtime"
	"strings"
)

// ReadersWaitingOutsideTLS counts this process's MQTT connections whose
// reader waits for its socket outside crypto/tls (mqtt.TLSConn), with the
// shallow stack of an idle TLS connection.
func ReadersWaitingOutsideTLS() int {
	buf := make([]byte, 8<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "mqtt.(*conn).waitAndRun") && strings.Contains(g, "mqtt.(*records).wait") && !strings.Contains(g, "crypto/tls") {
			count++
		}
	}
	return count
}
