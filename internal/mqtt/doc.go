// Package mqtt is thingid's own MQTT 3.1.1 and 5.0 server core, written from
// the OASIS specifications; it owns the wire, the sessions and their
// persistence, and must not know thingid's identities, rules or store: the
// broker plugs those in through Auth, IdentityCodec and Store.
//
// # Status (issue 16)
//
// The codec (package packet), the topic tree (package topics) and this
// server core are built and tested, and internal/broker runs on it (step
// 4): its auth is this package's Auth and IdentityCodec, its listeners call
// ServeConn, its sessions are in a Bolt file of their own
// (mqtt-sessions.db; mochi's mqtt.db is not carried over).
//
// # Design
//
// Packets. packet decodes a body after ReadHeader/ParseHeader read the
// fixed header, so the connection checks Maximum Packet Size before it
// reads (or allocates) a body. Decode copies everything it keeps. Every
// error is a *packet.Error with the MQTT 5 reason code the server answers:
// DISCONNECT with it for MQTT 5 (CONNACK before CONNECT is accepted), a
// plain close for MQTT 3.1.1, which never gets DISCONNECT from a server.
// Properties are one struct with a presence bitmask (Set, Has).
//
// Connections (conn.go). A reader goroutine per connection while it has
// bytes to read: it reads into a 16-byte array and takes a pooled buffer
// only while bytes are arriving. Once nothing is left to read (ReadNow says
// ErrWouldWait: TLSConn, Plain), the reader parks the connection and ends
// (park_linux.go): its socket goes into the server's epoll set, and one
// goroutine for all of them starts a new reader when it is readable, or
// ends the park at the keep-alive deadline (a heap of them, no timer per
// connection); closing the connection ends it too. Elsewhere than Linux a parked connection waits
// on a goroutine of its own. Packets to a client are encoded at once, by
// whichever goroutine sends them, into a pooled buffer under the
// connection's write lock; a writer goroutine runs only while that buffer
// is not empty. So an idle connection holds no goroutine and a few
// hundred bytes of heap of the core's (crypto/tls keeps more over TLS).
// Keep-alive is a read deadline of 1.5 times the keep alive, counting
// whole packets; Config.MaxKeepAlive is announced as Server Keep Alive.
// Without keep-alive a packet begun must be finished within
// Config.PacketWait; the read buffer grows with the bytes that arrive.
//
// Sessions (client.go, session.go). A Client is a session, connected or
// away; Server.sessions maps client identifiers to them. Lock order:
// Server.mu, then Client.mu, then conn.wmu. A session's end is decided
// under its lock (Client.ending) and done after it (endSession); a
// connection resuming the session meanwhile finishes that end and starts
// a session of its own, so it is never attached to one being ended. Auth is asked with Client.mu
// held (resume), so what Auth may read of a Client is atomic and Auth must
// never call back into the Server. Every message reaches a client through
// Client.deliver, which asks Auth.Deliver: live, retained, will and resumed
// messages alike (resume asks again for what was queued); topic aliases are
// resolved before Auth.Publish. QoS 1/2 messages to a client sit in
// inflight (sent, by packet id) or pending (beyond the client's Receive
// Maximum or while it is away), together at most Config.Inflight; more are
// dropped and counted in Stats.InflightDropped, unless the client is
// connected and keeps up: then the publisher's PUBACK or PUBREC waits until
// the window has room (flow control; at most twice the window, and one
// second per message). QoS 0 messages are dropped when
// Config.Queue packets wait to be written. Inbound QoS 2 uses the method
// that routes on PUBLISH and remembers the packet id until PUBREL, so a
// replay is acknowledged and not routed again; more unreleased than
// Config.ReceiveMaximum is DISCONNECT 0x93. Overlapping subscriptions of a
// client give one delivery at their highest QoS with every subscription
// identifier.
//
// Authentication. Auth.Connect decides on the CONNECT, or returns a
// *Challenge to go on with MQTT 5 enhanced authentication (§4.12): AUTH
// rounds answered by Auth.Continue, at CONNECT and at re-authentication.
//
// Persistence (persist.go, bolt.go). Store takes plain records (session,
// queued message, retained message), so a cluster store can replace Bolt.
// Messages queued for a persistent session and retained messages are
// stored before the publisher's PUBACK/PUBREC is written: a kill -9 loses
// no acknowledged message (TestKill9KeepsAcknowledged). The deliveries of
// one PUBLISH to stored sessions are one PutMessages (a batch), and wait in
// pending, unsent, until it is written, so no acknowledgement from a
// subscriber overtakes the write; Bolt's Batch shares one fsync among
// concurrent publishers. A QoS 2 message's packet id and PUBREC state are
// stored once sent, so it is resent as the same message after a restart;
// QoS 1 messages get new ids. Subscriptions are records of their own.
//
// A taken-over connection's will is checked as the identity that set it
// (conn.leftAs), not the one that took the session over.
package mqtt
