package console

import (
	"net/http"
	"strconv"
	"time"

	"github.com/thingid/thingid/internal/store"
)

type dashboardPage struct {
	base
	Things, Users, Paired int
	PairedShare           string
	Connections           int
	BrokerOff             bool
	// Since the process started, from History (empty without).
	Charts []Chart
	Rates  []rate
	// Certificates recorded on things, not revoked, expiring within
	// expiringWithin: the soonest, and how many.
	Expiring      []expiringRow
	ExpiringTotal int
	ExpiringDays  int
}

type expiringRow struct {
	Link, Thing, Fingerprint, NotAfter string
}

// expiringWithin is how soon a certificate's expiry counts as soon, and
// expiringShown how many of them the dashboard lists.
const (
	expiringWithin = 30 * 24 * time.Hour
	expiringShown  = 20
)

// rate is one counter's sums over the last hour and day.
type rate struct {
	Title     string
	Hour, Day float64
}

// showDashboard is GET /admin: the platform's numbers.
func (c *Console) showDashboard(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	p := dashboardPage{base: c.base(w, r, s)}
	var err error
	// Limit 0: the store counts, it reads no rows.
	if _, p.Things, err = c.opts.Identities.ListThings(ctx, store.Query{}); err != nil {
		c.pageError(w, r, err)
		return
	}
	if _, p.Users, err = c.opts.Identities.ListUsers(ctx, store.Query{}); err != nil {
		c.pageError(w, r, err)
		return
	}
	if _, p.Paired, err = c.opts.Identities.ListThings(ctx, store.Query{Filter: store.Present{Field: "owners"}}); err != nil {
		c.pageError(w, r, err)
		return
	}
	p.PairedShare = percent(p.Paired, p.Things)
	now := c.opts.Now()
	certs, total, err := c.opts.Store.ListExpiringCertificates(ctx, now.Add(expiringWithin), expiringShown)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p.ExpiringTotal, p.ExpiringDays = total, int(expiringWithin/(24*time.Hour))
	for _, ec := range certs {
		row := expiringRow{Link: pathOf("things", ec.ThingID), Thing: ec.ThingID, Fingerprint: ec.FingerprintSHA256, NotAfter: formatTime(ec.NotAfter)}
		if th, err := c.opts.Identities.GetThing(ctx, ec.ThingID); err == nil && th.DisplayName != "" {
			row.Thing = th.DisplayName
		}
		p.Expiring = append(p.Expiring, row)
	}
	if c.opts.Connections == nil {
		p.BrokerOff = true
	} else {
		for _, cn := range c.opts.Connections.Connections() {
			if cn.Connected {
				p.Connections++
			}
		}
	}
	if h := c.opts.History; h != nil {
		tr := c.kit.Translator(r)
		// label is what the bars count, in words with the number's %s.
		for _, s := range []struct{ name, title, label string }{
			{name: SeriesTokens, title: "Access tokens issued", label: "%s tokens"},
			{name: SeriesAuthFailures, title: "Authentication failures (sign-in, client authentication, MQTT login)", label: "%s failures"},
		} {
			day := h.PerMinute(s.name, now, historyMinutes)
			p.Rates = append(p.Rates, rate{Title: s.title, Hour: sum(day[len(day)-60:]), Day: sum(day)})
			p.Charts = append(p.Charts, chart(tr("%s, per minute, the last hour", tr(s.title)), s.label, day[len(day)-60:]),
				chart(tr("%s, per hour, the last day", tr(s.title)), s.label, perHour(day)))
		}
	}
	c.kit.Render(w, r, http.StatusOK, c.pages.dashboard, p)
}

// percent is part of whole as a whole percentage.
func percent(part, whole int) string {
	if whole == 0 {
		return "–"
	}
	return strconv.Itoa(part*100/whole) + " %"
}
