package directory

import (
	"context"
	"errors"
	"fmt"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// oidPasswordModify is the Password Modify extended operation (RFC 3062).
const oidPasswordModify = "1.3.6.1.4.1.4203.1.11.1"

// passwordModify is a PasswdModifyRequestValue (RFC 3062 §2).
type passwordModify struct {
	user, old, new string
	hasOld, hasNew bool
}

// decodePasswordModify decodes the request value; the fields are optional
// but in order.
func decodePasswordModify(b []byte) (*passwordModify, error) {
	if len(b) == 0 {
		return &passwordModify{}, nil
	}
	p, err := decodeBER(b)
	if err != nil {
		return nil, err
	}
	if p.ClassType != ber.ClassUniversal || p.Tag != ber.TagSequence || p.TagType != ber.TypeConstructed || len(p.Children) > 3 {
		return nil, fmt.Errorf("%w: PasswdModifyRequestValue is a SEQUENCE of at most three fields", errFraming)
	}
	r := &passwordModify{}
	next := 0
	for _, c := range p.Children {
		tag := int(c.Tag)
		if c.ClassType != ber.ClassContext || tag < next || tag > 2 {
			return nil, fmt.Errorf("%w: PasswdModifyRequestValue: unexpected field [%d]", errFraming, c.Tag)
		}
		next = tag + 1
		field := [...]string{"userIdentity", "oldPasswd", "newPasswd"}[tag]
		s, err := text(c, ber.ClassContext, c.Tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		switch tag {
		case 0:
			r.user = s
		case 1:
			r.old, r.hasOld = s, true
		case 2:
			r.new, r.hasNew = s, true
		}
	}
	return r, nil
}

// modifyPassword serves Password Modify. A user changes its own password
// with the old one, under the rules of /account/password; an
// administrator gives another user a one-time password, as a reset on the
// web does. Everything else is refused.
func (ss *session) modifyPassword(ctx context.Context, id int64, value []byte) bool {
	answer := func(code resultCode, why string) bool {
		return ss.respond(id, extendedResponse(result{code: code, diagnostic: why}, "", nil))
	}
	r, err := decodePasswordModify(value)
	switch {
	case err != nil:
		return answer(resultProtocolError, err.Error())
	case !ss.tls:
		return answer(resultConfidentialityRequired, "Password Modify needs TLS: use ldaps:// or StartTLS")
	case ss.who == nil || ss.who.userID == "":
		return answer(resultInsufficientAccessRights, "only a user bound with its password may change a password")
	case !r.hasNew || r.new == "":
		return answer(resultUnwillingToPerform, "newPasswd is required: this directory does not generate passwords")
	}
	target := ss.who.userID
	if r.user != "" {
		dn, err := ParseDN(r.user)
		if err != nil {
			return answer(resultInvalidDNSyntax, "userIdentity: "+err.Error())
		}
		n, err := ss.s.locate(dn)
		if err != nil || n.kind != "user" {
			return answer(resultNoSuchObject, "userIdentity: "+r.user+" is not a person of this directory")
		}
		u, err := ss.s.opts.Store.GetUserByName(ctx, n.name)
		if errors.Is(err, store.ErrNotFound) {
			return answer(resultNoSuchObject, "userIdentity: "+r.user+" does not exist")
		}
		if err != nil {
			ss.log.Error("ldap: password modify", "err", err)
			return answer(resultOther, "the directory could not read the user; try again later")
		}
		target = u.ID
	}
	actor := ss.who.actor()
	if target != ss.who.userID {
		if !ss.who.admin {
			return answer(resultInsufficientAccessRights, "userIdentity: only an administrator may change another user's password")
		}
		_, err := ss.s.opts.Writer.ResetPassword(ctx, actor, target, r.new)
		return ss.passwordResult(id, err)
	}
	if !r.hasOld || r.old == "" {
		return answer(resultInsufficientAccessRights, "oldPasswd is required to change your own password")
	}
	if r.old == r.new {
		return answer(resultConstraintViolation, "newPasswd must differ from the current password")
	}
	me, err := ss.s.opts.Store.GetUser(ctx, target)
	if err != nil {
		ss.log.Error("ldap: password modify", "err", err)
		return answer(resultOther, "the directory could not read the user; try again later")
	}
	// The old password is checked as a bind would check it: the same
	// counters and back-off, so Password Modify is no way to guess faster.
	// A one-time password is good here: changing it is what it is for.
	_, _, err = ss.s.opts.Passwords.CheckPassword(ctx, peer(ss.conn), "ldap", me.UserName, r.old)
	switch {
	case errors.Is(err, authn.ErrThrottled):
		return answer(resultUnwillingToPerform, "oldPasswd: too many attempts from this network; retry later")
	case errors.Is(err, authn.ErrSignInFailed):
		return answer(resultInvalidCredentials, "oldPasswd is wrong")
	case err != nil && !errors.Is(err, authn.ErrPasswordChangeRequired):
		ss.log.Error("ldap: password modify", "err", err)
		return answer(resultOther, "the directory could not check the password; try again later")
	}
	h, err := ss.s.opts.Writer.HashPassword(r.new, me)
	if err == nil {
		verified := me.PasswordHash
		_, err = ss.s.opts.Writer.UpdateUser(ctx, actor, target, 0, func(u *store.User) error {
			if u.PasswordHash != verified {
				return errPasswordMoved
			}
			u.PasswordHash = h // identity clears MustChangePassword
			return nil
		})
	}
	if err == nil {
		// Whoever knew the old password may hold a web session with it;
		// an LDAP session has none of its own to keep.
		err = ss.s.opts.Passwords.EndUserSessions(ctx, actor, target)
	}
	return ss.passwordResult(id, err)
}

var errPasswordMoved = errors.New("the password was changed meanwhile")

// passwordResult answers a password change's outcome.
func (ss *session) passwordResult(id int64, err error) bool {
	var ve *identity.ValidationError
	r := result{code: resultSuccess}
	switch {
	case err == nil:
	case errors.As(err, &ve):
		r = result{code: resultConstraintViolation, diagnostic: "newPasswd: " + ve.Reason()}
	case errors.Is(err, errPasswordMoved):
		r = result{code: resultUnwillingToPerform, diagnostic: "the password was changed meanwhile; bind again with the new one"}
	case errors.Is(err, store.ErrNotFound):
		r = result{code: resultNoSuchObject, diagnostic: "userIdentity: the user no longer exists"}
	default:
		ss.log.Error("ldap: password modify", "err", err)
		r = result{code: resultOther, diagnostic: "the password could not be changed; try again later"}
	}
	return ss.respond(id, extendedResponse(r, "", nil))
}
