package identity

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
)

// CreateUser validates u, hashes pw (when not empty) after the password policy and
// stores the user. The returned user carries the stored ID and revision.
func (s *Service) CreateUser(ctx context.Context, actor string, u *store.User, pw string) (*store.User, error) {
	if err := normalizeUser(u); err != nil {
		return nil, err
	}
	u.PasswordHash = ""
	if pw != "" {
		h, err := s.HashPassword(pw, u)
		if err != nil {
			return nil, err
		}
		u.PasswordHash = h
	}
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		if err := tx.CreateUser(ctx, u); err != nil {
			return nil, err
		}
		return []change{{action: "user.create", target: store.Ref{Kind: store.KindUser, ID: u.ID}}}, nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// UpdateUser applies fn to the stored user and validates the result. fn may set
// PasswordHash only to a value from HashPassword; a new PasswordHash clears
// MustChangePassword unless fn changes that flag too.
func (s *Service) UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error) {
	var out *store.User
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		var before store.Status
		var pwChanged bool
		u, err := tx.UpdateUser(ctx, id, ifRevision, func(u *store.User) error {
			before = u.Status
			oldHash, oldMust := u.PasswordHash, u.MustChangePassword
			oldEmail, oldVerified := PrimaryEmail(u), u.EmailVerified
			if err := fn(u); err != nil {
				return err
			}
			if u.PasswordHash != oldHash && u.PasswordHash != "" && !password.WellFormed(u.PasswordHash) {
				return invalid("password", "must be set through HashPassword")
			}
			pwChanged = u.PasswordHash != oldHash
			// A new password ends the obligation to change it, unless the
			// same change demands it again (an administrator's reset).
			if pwChanged && u.MustChangePassword == oldMust {
				u.MustChangePassword = false
			}
			if err := normalizeUser(u); err != nil {
				return err
			}
			// EmailVerified vouches for the primary address: a new one is not
			// verified unless the caller says so in the same change.
			if PrimaryEmail(u) != oldEmail && u.EmailVerified == oldVerified {
				u.EmailVerified = false
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = u
		ref := store.Ref{Kind: store.KindUser, ID: id}
		changes := []change{{action: "user.update", target: ref}}
		if ev := statusChange(store.KindUser, before, u.Status); ev != "" {
			changes = append(changes, change{action: ev, target: ref})
		}
		if pwChanged {
			changes = append(changes, change{action: "user.password", target: ref})
		}
		return changes, nil
	})
	return out, err
}

// ResetPassword gives the user the one-time password pw (checked against
// the policy) and ends all the user's sessions, in one transaction: until the
// user chooses a new password, signing in with pw opens only the password
// page (MustChangePassword), and nobody stays signed in with the old one. It
// is an administrator's answer to a forgotten or compromised password.
func (s *Service) ResetPassword(ctx context.Context, actor, id, pw string) (*store.User, error) {
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return nil, err
	}
	// Hashed before the transaction: argon2id must not hold the write lock.
	h, err := s.HashPassword(pw, u)
	if err != nil {
		return nil, err
	}
	var out *store.User
	err = s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		u, err := tx.UpdateUser(ctx, id, 0, func(u *store.User) error {
			u.PasswordHash, u.MustChangePassword = h, true
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := tx.DeleteUserSessions(ctx, id); err != nil {
			return nil, err
		}
		out = u
		ref := store.Ref{Kind: store.KindUser, ID: id}
		return []change{{action: "user.password-reset", target: ref}, {action: "session.terminate-all", target: ref}}, nil
	})
	return out, err
}

// ErrEmailMoved: the user's primary e-mail address is no longer the one a
// change of address started from.
var ErrEmailMoved = errors.New("the primary e-mail address changed meanwhile")

// ChangeEmail makes to the user's primary e-mail address, verified, in
// place of from, which must still be the primary address (ErrEmailMoved
// otherwise): the user followed the link sent to `to` for a change asked
// while from was theirs. Changing to the address the user holds verified
// already changes nothing. store.ErrEmailTaken when another user verified
// `to` meanwhile.
func (s *Service) ChangeEmail(ctx context.Context, actor, id, from, to string) (*store.User, error) {
	var out *store.User
	errSame := errors.New("unchanged")
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		u, err := tx.UpdateUser(ctx, id, 0, func(u *store.User) error {
			switch primary := PrimaryEmail(u); {
			case primary == to && u.EmailVerified:
				return errSame
			case primary != from:
				return ErrEmailMoved
			}
			found := false
			for i := range u.Emails {
				if u.Emails[i].Value == from && (u.Emails[i].Primary || i == 0) {
					u.Emails[i].Value, found = to, true
					break
				}
			}
			if !found {
				u.Emails = append(u.Emails, store.MultiValue{Value: to, Primary: true})
			}
			u.EmailVerified = true
			return normalizeUser(u)
		})
		if err != nil {
			return nil, err
		}
		out = u
		ref := store.Ref{Kind: store.KindUser, ID: id}
		return []change{{action: "user.update", target: ref}, {action: "user.email-change", target: ref}}, nil
	})
	if errors.Is(err, errSame) {
		return s.store.GetUser(ctx, id)
	}
	return out, err
}

// RequestPasswordReset stores r, an e-mailed "forgot password" link of
// r.UserID, and audits the request (the link itself is in no record).
func (s *Service) RequestPasswordReset(ctx context.Context, actor string, r *store.PasswordReset) error {
	return s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		if err := tx.CreatePasswordReset(ctx, r); err != nil {
			return nil, err
		}
		return []change{{action: "user.password-reset-request", target: store.Ref{Kind: store.KindUser, ID: r.UserID}}}, nil
	})
}

// RecoverPassword completes a reset the user asked for by e-mail: in one
// transaction it uses the reset stored under resetHash (store.ErrNotFound
// when it is unknown, used, expired at `at` or not userID's), gives the user
// the password hash h (from HashPassword; the user chose it, so a one-time
// password's obligation ends), and ends every session and every other
// outstanding reset of the user: whoever took over the account with the old
// password is signed out.
func (s *Service) RecoverPassword(ctx context.Context, actor string, resetHash []byte, userID, h string, at time.Time) (*store.User, error) {
	if !password.WellFormed(h) {
		return nil, invalid("password", "must be set through HashPassword")
	}
	var out *store.User
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		r, err := tx.UsePasswordReset(ctx, resetHash, at)
		if err != nil {
			return nil, err
		}
		if r.UserID != userID {
			return nil, fmt.Errorf("password reset of another user: %w", store.ErrNotFound)
		}
		u, err := tx.UpdateUser(ctx, userID, 0, func(u *store.User) error {
			u.PasswordHash, u.MustChangePassword = h, false
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := tx.DeleteUserSessions(ctx, userID); err != nil {
			return nil, err
		}
		if err := tx.DeleteUserPasswordResets(ctx, userID); err != nil {
			return nil, err
		}
		out = u
		ref := store.Ref{Kind: store.KindUser, ID: userID}
		return []change{{action: "user.password-recover", target: ref}, {action: "session.terminate-all", target: ref}}, nil
	})
	return out, err
}

// DeleteUser removes a user, every relationship it has and its sessions.
func (s *Service) DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error {
	return s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		if err := tx.DeleteUser(ctx, id, ifRevision); err != nil {
			return nil, err
		}
		// A deleted user's sessions are refused anyway (authn reads the
		// user on every request); they go with it so nothing lingers.
		if err := tx.DeleteUserSessions(ctx, id); err != nil {
			return nil, err
		}
		return []change{{action: "user.delete", target: store.Ref{Kind: store.KindUser, ID: id}}}, nil
	})
}

// GetUser reads one user.
func (s *Service) GetUser(ctx context.Context, id string) (*store.User, error) {
	return s.store.GetUser(ctx, id)
}

// GetUserByName reads one user by name, case-insensitively and in any
// compatibility form of it (full-width letters).
func (s *Service) GetUserByName(ctx context.Context, name string) (*store.User, error) {
	return s.store.GetUserByName(ctx, NormalizeUserName(name))
}

// GetUserByVerifiedEmail reads the one user who has verified the address
// (case-insensitively); an address held only unverified finds nobody.
func (s *Service) GetUserByVerifiedEmail(ctx context.Context, email string) (*store.User, error) {
	return s.store.GetUserByVerifiedEmail(ctx, strings.TrimSpace(email))
}

// PrimaryEmail is the address EmailVerified is about (store.User.PrimaryEmail).
func PrimaryEmail(u *store.User) string { return u.PrimaryEmail() }

// NormalizeUserName maps compatibility forms to their canonical letters (NFKC,
// as the PRECIS username profiles of RFC 8265 do), so that "ＡＤＭＩＮ" is the
// same name as "admin" for the store's case-insensitive uniqueness rather than
// a look-alike second account. Whoever keeps a user name to compare later
// (a household's invitation) keeps it in this form.
func NormalizeUserName(name string) string {
	return strings.TrimSpace(norm.NFKC.String(name))
}

// ListUsers reads a page of users.
func (s *Service) ListUsers(ctx context.Context, q store.Query) ([]*store.User, int, error) {
	return s.store.ListUsers(ctx, q)
}

var (
	localeRE = regexp.MustCompile(`^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$`)
	phoneRE  = regexp.MustCompile(`^\+?[0-9][0-9 ().-]{2,30}$`)
	tzRE     = regexp.MustCompile(`^[A-Za-z_]+(?:/[A-Za-z0-9_+-]+){0,2}$`)
)

// normalizeUser validates u in place: trims names, lower-cases e-mail domains,
// defaults the status.
func normalizeUser(u *store.User) error {
	u.UserName = NormalizeUserName(u.UserName)
	if err := checkText("userName", u.UserName, 1, 256); err != nil {
		return err
	}
	for _, r := range u.UserName {
		if !unicode.IsGraphic(r) {
			return invalid("userName", "must not contain invisible or formatting characters such as U+%04X", r)
		}
	}
	for _, f := range []struct {
		name, value string
	}{
		{"displayName", u.DisplayName}, {"externalId", u.ExternalID},
		{"name.formatted", u.Name.Formatted}, {"name.familyName", u.Name.FamilyName},
		{"name.givenName", u.Name.GivenName}, {"name.middleName", u.Name.MiddleName},
		{"name.honorificPrefix", u.Name.HonorificPrefix}, {"name.honorificSuffix", u.Name.HonorificSuffix},
	} {
		if err := checkText(f.name, f.value, 0, 256); err != nil {
			return err
		}
	}
	if err := checkStatus(&u.Status); err != nil {
		return err
	}
	if u.Locale != "" && !localeRE.MatchString(u.Locale) {
		return invalid("locale", "%q is not a language tag such as en-US", u.Locale)
	}
	if u.Timezone != "" {
		if !tzRE.MatchString(u.Timezone) {
			return invalid("timezone", "%q is not an IANA time zone such as Europe/Berlin", u.Timezone)
		}
		if _, err := time.LoadLocation(u.Timezone); err != nil {
			return invalid("timezone", "unknown time zone %q", u.Timezone)
		}
	}
	for i := range u.Emails {
		e := &u.Emails[i]
		addr, err := mail.ParseAddress(e.Value)
		if err != nil || addr.Address != strings.TrimSpace(e.Value) || addr.Name != "" {
			return invalid("emails", "%q is not an e-mail address", e.Value)
		}
		at := strings.LastIndexByte(addr.Address, '@')
		e.Value = addr.Address[:at] + strings.ToLower(addr.Address[at:])
	}
	if err := checkMulti("emails", u.Emails); err != nil {
		return err
	}
	for _, p := range u.PhoneNumbers {
		if !phoneRE.MatchString(p.Value) {
			return invalid("phoneNumbers", "%q is not a phone number", p.Value)
		}
	}
	return checkMulti("phoneNumbers", u.PhoneNumbers)
}

func checkMulti(field string, vs []store.MultiValue) error {
	if len(vs) > 20 {
		return invalid(field, "at most 20 values")
	}
	primaries := 0
	for _, v := range vs {
		if v.Primary {
			primaries++
		}
		if err := checkText(field+".type", v.Type, 0, 64); err != nil {
			return err
		}
		if err := checkText(field+".display", v.Display, 0, 256); err != nil {
			return err
		}
	}
	if primaries > 1 {
		return invalid(field, "only one value may be primary (RFC 7643 §2.4)")
	}
	return nil
}

func checkStatus(st *store.Status) error {
	switch *st {
	case "":
		*st = store.StatusActive
	case store.StatusActive, store.StatusDisabled:
	default:
		return invalid("status", "%q is neither active nor disabled", *st)
	}
	return nil
}

// checkText requires valid UTF-8 of min..max characters without control characters.
func checkText(field, v string, minLen, maxLen int) error {
	n := utf8.RuneCountInString(v)
	switch {
	case !utf8.ValidString(v):
		return invalid(field, "is not valid UTF-8")
	case n < minLen && minLen == 1:
		return invalid(field, "is required")
	case n < minLen:
		return invalid(field, "must have at least %d characters", minLen)
	case n > maxLen:
		return invalid(field, "must have at most %d characters", maxLen)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return invalid(field, "must not contain control characters")
		}
	}
	return nil
}
