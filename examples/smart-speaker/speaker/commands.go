package speaker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Commands arrive on things/<id>/commands/<name>, the argument as the
// message's payload, in plain text:
//
//	volume  0..100
//	play    a track name (1 to 200 printable characters)
//	pause, stop   no argument
const maxTrack = 200

// command is one parsed command.
type command struct {
	name   string
	volume int
	track  string
}

// parseCommand reads the command named by the last topic level; the
// payload is its argument.
func parseCommand(name string, payload []byte) (command, error) {
	arg := strings.TrimSpace(string(payload))
	c := command{name: name}
	switch name {
	case "volume":
		v, err := strconv.Atoi(arg)
		if err != nil || v < 0 || v > 100 {
			return c, fmt.Errorf("volume %q: want a whole number from 0 to 100", clip(arg))
		}
		c.volume = v
	case "play":
		if arg == "" || len(arg) > maxTrack || !utf8.ValidString(arg) || strings.IndexFunc(arg, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return c, fmt.Errorf("play %q: want a track name of 1 to %d printable characters", clip(arg), maxTrack)
		}
		c.track = arg
	case "pause", "stop":
		if arg != "" {
			return c, fmt.Errorf("%s takes no argument, got %q", name, clip(arg))
		}
	default:
		return c, fmt.Errorf("unknown command %q (volume, play, pause, stop)", clip(name))
	}
	return c, nil
}

// clip shortens what a sender wrote for an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// player is what the speaker is doing; telemetry reports it.
type player struct {
	Volume int    `json:"volume"`
	State  string `json:"state"` // playing, paused, stopped
	Track  string `json:"track,omitempty"`
}

func newPlayer() player { return player{Volume: 30, State: "stopped"} }

// apply carries out a command and says what the display shows now.
func (p *player) apply(c command) string {
	switch c.name {
	case "volume":
		p.Volume = c.volume
	case "play":
		p.State, p.Track = "playing", c.track
	case "pause":
		if p.State == "playing" {
			p.State = "paused"
		}
	case "stop":
		p.State, p.Track = "stopped", ""
	}
	return p.line()
}

// line is the one-line display of the player.
func (p *player) line() string {
	switch p.State {
	case "playing":
		return fmt.Sprintf("▶ %s · volume %d", p.Track, p.Volume)
	case "paused":
		return fmt.Sprintf("Ⅱ %s · volume %d", p.Track, p.Volume)
	}
	return fmt.Sprintf("■ stopped · volume %d", p.Volume)
}

// telemetry is the message published on things/<id>/telemetry.
type telemetry struct {
	Seq      int64 `json:"seq"`
	UptimeS  int64 `json:"uptime_s"`
	Commands int64 `json:"commands"` // obeyed so far
	player
}

func (t telemetry) payload() []byte {
	b, _ := json.Marshal(t)
	return b
}
