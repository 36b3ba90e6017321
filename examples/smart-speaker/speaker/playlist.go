package speaker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/thingid/thingid/sdk"
)

// The playlist that somebody shares with the speaker's owner (UMA 2.0): the
// speaker asks for it through the gateway with the SDK's UMA client, which
// answers the gateway's 401 and permission ticket by getting an RPT, its
// own token (acting for the owner) as the claim token, and asks again with
// it. The owner of the playlist decides: until they share it, the platform
// answers that they have been asked; once they take it back, the gateway
// refuses the RPT and the speaker stops playing.

// sharedPlaylist is what the music service answers.
type sharedPlaylist struct {
	Name   string   `json:"name"`
	Owner  string   `json:"owner"`
	Tracks []string `json:"tracks"`
}

// parsePlaylist reads the service's answer: a name and tracks the player
// can play.
func parsePlaylist(body []byte) (*sharedPlaylist, error) {
	var p sharedPlaylist
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("the answer is not a playlist: %w", err)
	}
	if p.Name == "" || len(p.Tracks) == 0 {
		return nil, errors.New("the answer is not a playlist: no name or no tracks")
	}
	for _, t := range p.Tracks {
		if _, err := parseCommand("play", []byte(t)); err != nil {
			return nil, fmt.Errorf("the playlist %q: %w", clip(p.Name), err)
		}
	}
	return &p, nil
}

// askPlaylist asks for the playlist and schedules the next request.
func (l *loop) askPlaylist() error {
	s := l.s
	next := s.cfg.PlaylistInterval
	defer func() { l.playlistDue.Reset(next) }()
	r, err := s.get(l.ctx, l.uma, s.cfg.PlaylistURL, nil)
	var refusal *sdk.UMAError
	switch {
	case errors.As(err, &refusal):
		s.playlistOut.ok()
		next = max(next, refusal.Interval) // request_submitted: no sooner than the platform asks
		return l.notShared(refusal)
	case invalidGrant(err):
		// The claim token is the owner's access token: it could not be
		// refreshed.
		return l.tokenTrouble(err)
	case err != nil:
		if l.ctx.Err() != nil {
			return l.ctx.Err()
		}
		if ferr := s.playlistOut.failed(err, s.cfg.RetryFor); ferr != nil {
			return ferr
		}
		s.emit(Event{Step: StepTrouble, Message: fmt.Sprintf("the playlist did not come (%v); trying again", err), Err: err})
		return nil
	case r.status >= 500:
		err := fmt.Errorf("the playlist's service answered %d: %s", r.status, problemDetail(r.body))
		if ferr := s.playlistOut.failed(err, s.cfg.RetryFor); ferr != nil {
			return ferr
		}
		s.emit(Event{Step: StepTrouble, Status: r.status, Message: err.Error() + "; trying again", Err: err})
		return nil
	}
	s.playlistOut.ok()
	if r.status == http.StatusOK {
		p, err := parsePlaylist(r.body)
		if err == nil {
			l.play(p, r)
			return nil
		}
		l.refused(r.status, err)
		return nil
	}
	if r.status == http.StatusTooManyRequests {
		next = max(next, r.retryAfter)
	}
	detail := problemDetail(r.body)
	if r.challenge != "" {
		detail += " (" + r.challenge + ")"
	}
	l.refused(r.status, fmt.Errorf("%d: %s", r.status, detail))
	return nil
}

// play starts the playlist's first track, unless it is playing already.
func (l *loop) play(p *sharedPlaylist, r *apiResult) {
	line := ""
	if l.playing != p.Name {
		l.playing = p.Name
		line = l.player.apply(command{name: "play", track: p.Tracks[0]})
	}
	l.report(line, p.Name, Event{Step: StepPlaylist, Status: r.status, Payload: r.body,
		Message: fmt.Sprintf("playing %q of %s (%d tracks): ▶ %s", p.Name, p.Owner, len(p.Tracks), p.Tracks[0])})
}

// notShared handles the platform's refusal to issue an RPT.
func (l *loop) notShared(refusal *sdk.UMAError) error {
	stopped := l.stop()
	switch {
	case errors.Is(refusal, sdk.ErrAccessRequested):
		l.report("Asked for the playlist: waiting for its owner", refusal.Code, Event{Step: StepPlaylistWaiting, Err: refusal,
			Message: stopped + "the playlist is not shared with the owner: its owner has been asked (request_submitted)"})
	case errors.Is(refusal, sdk.ErrAccessDenied):
		l.report("The playlist's owner said no", refusal.Code, Event{Step: StepPlaylistRefused, Err: refusal,
			Message: stopped + "the playlist's owner refused to share it (request_denied)"})
	default:
		// invalid_grant also answers a claim token that was revoked.
		if u := l.unlinked("the platform gave no RPT for the playlist", refusal); u != nil {
			return u
		}
		l.report("", refusal.Error(), Event{Step: StepPlaylistRefused, Err: refusal, Message: stopped + refusal.Error()})
	}
	return nil
}

// refused handles an answer of the gateway or the service that is no
// playlist.
func (l *loop) refused(status int, err error) {
	l.report("", err.Error(), Event{Step: StepPlaylistRefused, Status: status, Err: err, Message: l.stop() + "the playlist was refused: " + err.Error()})
}

// stop stops the playlist if it is playing, and says so.
func (l *loop) stop() string {
	if l.playing == "" {
		return ""
	}
	l.playing = ""
	l.s.display(l.player.apply(command{name: "stop"}))
	return "stopped playing it: "
}

// report emits a playlist event, and shows line (if any), when the answer
// differs from the last: what the speaker got, in e.Step and what (the
// playlist, the refusal). The speaker asks again and again, and most
// answers are the last one again.
func (l *loop) report(line, what string, e Event) {
	answer := string(e.Step) + "\x00" + what
	if answer == l.answer {
		return
	}
	l.answer = answer
	if line != "" {
		l.s.display(line)
	}
	l.s.emit(e)
}
