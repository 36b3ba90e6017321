package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// userDoc is the JSON document of a user: everything not in a typed column.
type userDoc struct {
	Name          store.Name         `json:"name,omitzero"`
	Emails        []store.MultiValue `json:"emails,omitempty"`
	PhoneNumbers  []store.MultiValue `json:"phoneNumbers,omitempty"`
	Locale        string             `json:"locale,omitempty"`
	Timezone      string             `json:"timezone,omitempty"`
	EmailVerified bool               `json:"emailVerified"`
	PasswordHash  string             `json:"passwordHash,omitempty"`
	// MustChangePassword is absent from documents written before it existed,
	// which reads as false: no migration needed.
	MustChangePassword bool `json:"mustChangePassword,omitempty"`
}

const userColumns = "x.id, x.user_name, x.display_name, x.status, x.external_id, x.created, x.modified, x.revision, x.doc"

func scanUser(s scanner) (*store.User, error) {
	var (
		u   store.User
		doc []byte
	)
	if err := s.Scan(&u.ID, &u.UserName, &u.DisplayName, &u.Status, &u.ExternalID,
		timeCol{&u.Created}, timeCol{&u.Modified}, &u.Revision, &doc); err != nil {
		return nil, err
	}
	var d userDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("user %s: document: %w", u.ID, err)
	}
	u.Name, u.Emails, u.PhoneNumbers = d.Name, d.Emails, d.PhoneNumbers
	u.Locale, u.Timezone, u.EmailVerified, u.PasswordHash = d.Locale, d.Timezone, d.EmailVerified, d.PasswordHash
	u.MustChangePassword = d.MustChangePassword
	return &u, nil
}

func userDocOf(u *store.User) (string, error) {
	b, err := json.Marshal(userDoc{
		Name: u.Name, Emails: u.Emails, PhoneNumbers: u.PhoneNumbers, Locale: u.Locale,
		Timezone: u.Timezone, EmailVerified: u.EmailVerified, PasswordHash: u.PasswordHash,
		MustChangePassword: u.MustChangePassword,
	})
	return string(b), err
}

func (t *txn) CreateUser(ctx context.Context, u *store.User) error {
	m := store.Meta{ID: u.ID, Revision: 1, Created: now()}
	if m.ID == "" {
		m.ID = newID()
	}
	m.Modified = m.Created
	doc, err := userDocOf(u)
	if err != nil {
		return fmt.Errorf("user %s: %w", m.ID, err)
	}
	f := t.flavor()
	// ON CONFLICT DO NOTHING instead of catching the violation: a failed
	// statement would abort a PostgreSQL transaction the caller may continue.
	res, err := t.q.ExecContext(ctx, `INSERT INTO users
		(id, user_name, user_name_lower, display_name, status, external_id, created, modified, revision, doc, verified_email)
		VALUES `+t.placeholders(1, 11, 1)+` ON CONFLICT DO NOTHING`,
		m.ID, u.UserName, strings.ToLower(u.UserName), u.DisplayName, string(u.Status), u.ExternalID,
		f.timeArg(m.Created), f.timeArg(m.Modified), m.Revision, doc, verifiedEmailArg(u))
	if err != nil {
		return fmt.Errorf("create user %q: %w", u.UserName, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		if ok, err := t.exists(ctx, "users", m.ID); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("user id %q: %w", m.ID, store.ErrConflict)
		}
		if _, err := t.GetUserByName(ctx, u.UserName); err == nil {
			return store.Conflict("userName", u.UserName, fmt.Errorf("userName %q: %w", u.UserName, store.ErrConflict))
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("email %q: %w", u.PrimaryEmail(), store.ErrEmailTaken)
	}
	if err := t.setEmails(ctx, m.ID, u.Emails); err != nil {
		return err
	}
	u.Meta = m
	return nil
}

// setEmails replaces the user_emails rows of user id with its addresses,
// lower-cased: the index of equality filters on emails.
func (t *txn) setEmails(ctx context.Context, id string, emails []store.MultiValue) error {
	if _, err := t.q.ExecContext(ctx, "DELETE FROM user_emails WHERE user_id = "+t.ph(1), id); err != nil {
		return fmt.Errorf("user %s emails: %w", id, err)
	}
	for _, e := range emails {
		if _, err := t.q.ExecContext(ctx, "INSERT INTO user_emails (value, user_id) VALUES ("+t.ph(1)+", "+t.ph(2)+") ON CONFLICT DO NOTHING",
			strings.ToLower(e.Value), id); err != nil {
			return fmt.Errorf("user %s emails: %w", id, err)
		}
	}
	return nil
}

func (t *txn) getUser(ctx context.Context, where string, arg any, lock bool) (*store.User, error) {
	q := "SELECT " + userColumns + " FROM users AS x WHERE " + where + " = " + t.ph(1)
	if lock {
		q += t.flavor().forUpdate()
	}
	return scanUser(t.q.QueryRowContext(ctx, q, arg))
}

func (t *txn) GetUser(ctx context.Context, id string) (*store.User, error) {
	u, err := t.getUser(ctx, "x.id", id, false)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
	}
	return u, err
}

func (t *txn) GetUserByName(ctx context.Context, userName string) (*store.User, error) {
	u, err := t.getUser(ctx, "x.user_name_lower", strings.ToLower(userName), false)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("userName %q: %w", userName, store.ErrNotFound)
	}
	return u, err
}

// verifiedEmailArg is the users.verified_email column: NULL unless verified,
// so that the unique index covers verified addresses only.
func verifiedEmailArg(u *store.User) any {
	if v := u.VerifiedEmail(); v != "" {
		return v
	}
	return nil
}

func (t *txn) GetUserByVerifiedEmail(ctx context.Context, email string) (*store.User, error) {
	u, err := t.getUser(ctx, "x.verified_email", strings.ToLower(email), false)
	if errors.Is(err, sql.ErrNoRows) || email == "" {
		return nil, fmt.Errorf("verified email %q: %w", email, store.ErrNotFound)
	}
	return u, err
}

func (t *txn) UpdateUser(ctx context.Context, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error) {
	f := t.flavor()
	return update(store.KindUser, id, ifRevision,
		func() (*store.User, *store.Meta, error) {
			u, err := t.getUser(ctx, "x.id", id, true)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, nil, fmt.Errorf("user %s: %w", id, store.ErrNotFound)
			}
			if err != nil {
				return nil, nil, err
			}
			return u, &u.Meta, nil
		}, fn,
		func(u *store.User, prev int64) (bool, error) {
			doc, err := userDocOf(u)
			if err != nil {
				return false, fmt.Errorf("user %s: %w", id, err)
			}
			res, err := t.q.ExecContext(ctx, `UPDATE users SET user_name = `+t.ph(1)+`, user_name_lower = `+t.ph(2)+
				`, display_name = `+t.ph(3)+`, status = `+t.ph(4)+`, external_id = `+t.ph(5)+`, modified = `+t.ph(6)+
				`, revision = `+t.ph(7)+`, doc = `+t.ph(8)+`, verified_email = `+t.ph(11)+` WHERE id = `+t.ph(9)+` AND revision = `+t.ph(10),
				u.UserName, strings.ToLower(u.UserName), u.DisplayName, string(u.Status), u.ExternalID,
				f.timeArg(u.Modified), u.Revision, doc, id, prev, verifiedEmailArg(u))
			if err != nil {
				if t.s.cfg.IsUniqueViolation(err) {
					// A failed statement aborts a PostgreSQL transaction:
					// tell the two unique keys apart by the index named.
					if strings.Contains(err.Error(), "verified_email") {
						return false, fmt.Errorf("email %q: %w", u.PrimaryEmail(), store.ErrEmailTaken)
					}
					return false, store.Conflict("userName", u.UserName, fmt.Errorf("userName %q: %w", u.UserName, store.ErrConflict))
				}
				return false, fmt.Errorf("update user %s: %w", id, err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return false, err
			}
			return true, t.setEmails(ctx, id, u.Emails)
		})
}

func (t *txn) DeleteUser(ctx context.Context, id string, ifRevision int64) error {
	return t.deleteIdentity(ctx, store.KindUser, id, ifRevision)
}

func (t *txn) ListUsers(ctx context.Context, q store.Query) ([]*store.User, int, error) {
	var us []*store.User
	total, err := t.list(ctx, userKind, q, userColumns, relatedOf{}, func(rows *sql.Rows) error {
		u, err := scanUser(rows)
		if err == nil {
			us = append(us, u)
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return us, total, nil
}
