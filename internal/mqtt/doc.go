// Package mqtt is thingid's own MQTT 3.1.1 and 5.0 server core, written from
// the OASIS specifications; it owns the wire and the session state, and must
// not know thingid's identities, rules or store (the broker plugs those in).
//
// The core is being built in steps (issue 16); what exists today:
//
//   - packet: the codec for every control packet of both versions. Decoding
//     takes a fixed header read first (ReadHeader) and the packet's body, so
//     a connection can refuse an oversized packet (Maximum Packet Size) before
//     reading its body, and read the body into a pooled buffer: Decode copies
//     everything it keeps and never retains the body. Encoding appends to a
//     caller's slice, so writers encode into pooled buffers (GetBuffer).
//     Every decoding error is an *Error carrying the MQTT 5 reason code the
//     server answers with (0x81 malformed, 0x82 protocol error, 0x95 packet
//     too large, ...); for MQTT 3.1.1 the same error means "close the
//     connection", since a 3.1.1 server never sends DISCONNECT.
//
//   - topics: the subscription tree (wildcards, $share groups served in
//     turn, No Local, Retain As Published, Subscription Identifiers, one
//     delivery per client for overlapping subscriptions at their highest
//     QoS), the retained store, and Grants, the allow/deny topic filters
//     where a deny wins (a subscription reaching into a denied topic in part
//     is granted; the delivery check refuses the denied messages). Matching
//     walks levels without recursion under a read lock.
//
// Properties are one struct with a presence bitmask indexed by property
// identifier (all identifiers are below 64), so a property's zero value and
// its absence differ, and duplicate detection is one bit test.
//
// Still to come, in this order: the server core (connections, sessions,
// flow control, persistence, transports), then the broker's switch-over.
package mqtt
