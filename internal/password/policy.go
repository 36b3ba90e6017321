package password

import (
	_ "embed"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/thingid/thingid/internal/refusal"
)

// Defaults of Policy after NIST SP 800-63B rev. 4 §3.1.1.2: at least 15 characters
// for a password used as a single factor, and a maximum of at least 64.
const (
	DefaultMinLength = 15
	DefaultMaxLength = 256
)

// minSurprising is how many characters of a password (after removing a user input
// or a listed password it was built from) must not follow from the one before.
const minSurprising = 5

// commonPasswords is the blocklist SP 800-63B rev. 4 §3.1.1.2 asks verifiers to
// compare new passwords with: passwords frequent in public breach corpora plus
// context-specific words (the name of the service), lower-cased, one per line.
//
//go:embed common-passwords.txt
var commonPasswords string

var blocklist = func() map[string]bool {
	m := make(map[string]bool, strings.Count(commonPasswords, "\n")+1)
	for line := range strings.Lines(commonPasswords) {
		if w := strings.TrimSpace(line); w != "" {
			m[w] = true
		}
	}
	return m
}()

// Policy is the password policy of NIST SP 800-63B rev. 4 §3.1.1.2: a length range
// counted in Unicode code points after NFKC normalization, a blocklist of common,
// compromised and context-specific passwords, and no composition rules. The zero
// Policy uses DefaultMinLength and DefaultMaxLength.
type Policy struct {
	MinLength int
	MaxLength int
}

// Rule names the part of the policy a password broke.
type Rule string

const (
	RuleEncoding    Rule = "encoding"
	RuleTooShort    Rule = "too-short"
	RuleTooLong     Rule = "too-long"
	RuleCommon      Rule = "common"
	RuleUserInput   Rule = "user-input"
	RulePredictable Rule = "predictable"
)

// PolicyError says which rule a password broke; its message tells the user what
// to do instead, and names no field (a page translates it, ui.Refusal).
type PolicyError struct {
	Rule Rule
	refusal.FieldError
}

// advise is the refusal of rule, advising format.
func advise(rule Rule, format string, args ...any) *PolicyError {
	return &PolicyError{Rule: rule, FieldError: refusal.FieldError{Src: format, Args: args}}
}

// Check returns a *PolicyError when pw must not be used as a new password.
// userInputs are words the password must not be built from: the user name, the
// e-mail address (its local part is checked as well).
func (p Policy) Check(pw string, userInputs ...string) error {
	minLen, maxLen := p.MinLength, p.MaxLength
	if minLen <= 0 {
		minLen = DefaultMinLength
	}
	if maxLen <= 0 {
		maxLen = DefaultMaxLength
	}
	if !utf8.ValidString(pw) {
		return advise(RuleEncoding, "use text only: the password is not valid UTF-8")
	}
	// SP 800-63B rev. 4 §3.1.1.2: normalize Unicode (NFKC) and count each code
	// point as one character.
	folded := strings.ToLower(norm.NFKC.String(pw))
	n := utf8.RuneCountInString(folded)
	if n < minLen {
		return advise(RuleTooShort, "use at least %d characters; a passphrase of several unrelated words works well", minLen)
	}
	// Rejected rather than truncated: §3.1.1.2 requires verifying the whole password.
	if n > maxLen {
		return advise(RuleTooLong, "use at most %d characters", maxLen)
	}
	// Very short passwords (a lowered MinLength) cannot have minSurprising
	// unpredictable characters; ask for half of them.
	need := min(minSurprising, (n+1)/2)

	// §3.1.1.2: compare the whole password with the blocklist; also catch a
	// listed password padded with digits or symbols ("password1234567!").
	core := strings.TrimFunc(folded, func(r rune) bool { return !unicode.IsLetter(r) })
	if blocklist[folded] || (core != "" && blocklist[core] && surprising(strings.Replace(folded, core, "", 1)) < need) {
		return advise(RuleCommon, "this password is on a list of common or breached passwords; choose another one: a passphrase of several unrelated words works well")
	}

	// §3.1.1.2 lists context-specific words, such as the user name, and derivatives.
	for _, in := range contextWords(userInputs) {
		if strings.Contains(folded, in) && surprising(strings.ReplaceAll(folded, in, "")) < need {
			return advise(RuleUserInput, "do not build the password from your user name or e-mail address; a passphrase of several unrelated words works well")
		}
	}

	// Repetitive or sequential characters ("aaaaaa", "1234abcd", SP 800-63B-3
	// §5.1.1.2) judged over the whole password: the rule never forbids a
	// repeated character inside an otherwise good password, which would be a
	// composition rule §3.1.1.2 prohibits.
	if periodic(folded) || surprising(folded) < need {
		return advise(RulePredictable, `avoid repeated characters, sequences and keyboard patterns such as "aaaa", "1234" or "qwerty"; a passphrase of several unrelated words works well`)
	}
	return nil
}

// contextWords normalizes the user inputs like the password and adds the local
// part of e-mail addresses. Inputs shorter than 3 characters are ignored: removing
// them from a password would say nothing about it.
func contextWords(inputs []string) []string {
	var out []string
	add := func(s string) {
		s = strings.ToLower(norm.NFKC.String(strings.TrimSpace(s)))
		if utf8.RuneCountInString(s) >= 3 {
			out = append(out, s)
		}
	}
	for _, in := range inputs {
		add(in)
		if at := strings.LastIndexByte(in, '@'); at > 0 {
			add(in[:at])
		}
	}
	return out
}

// periodic reports whether s is a shorter string repeated ("abcabcabc",
// "passwordpassword"), the last repetition possibly cut short.
func periodic(s string) bool {
	r := []rune(s)
	for p := 1; p <= len(r)/2; p++ {
		i := p
		for i < len(r) && r[i] == r[i-p] {
			i++
		}
		if i == len(r) {
			return true
		}
	}
	return false
}

// yearRE matches the years people append to passwords ("Summer2024!").
var yearRE = regexp.MustCompile(`(?:19|20)[0-9]{2}`)

// surprising counts the characters of s that do not follow from the character
// before: a repeat, the next or previous character in code point order
// ("abc", "321", with "90" wrapping for digit runs), or a neighbour on a QWERTY
// keyboard ("qwerty", "1qaz"). A year counts as one character.
func surprising(s string) int {
	s = yearRE.ReplaceAllLiteralString(s, "\x00")
	count := 0
	prev := rune(-1)
	for _, r := range s {
		if prev < 0 || !follows(prev, r) {
			count++
		}
		prev = r
	}
	return count
}

func follows(a, b rune) bool {
	switch d := b - a; {
	case d >= -1 && d <= 1:
		return true
	case a == '9' && b == '0', a == '0' && b == '9':
		return true
	}
	pa, okA := keyPos[a]
	pb, okB := keyPos[b]
	if !okA || !okB {
		return false
	}
	dr, dc := pa[0]-pb[0], pa[1]-pb[1]
	return (dr == 0 && (dc == 0 || dc == 1 || dc == -1)) || (dc == 0 && (dr == 1 || dr == -1))
}

// keyPos maps a key of a US QWERTY keyboard to its row and column; a shifted
// symbol sits on the key of its unshifted character.
var keyPos = func() map[rune][2]int {
	rows := [][2]string{
		{"`1234567890-=", "~!@#$%^&*()_+"},
		{" qwertyuiop[]", " qwertyuiop{}"},
		{" asdfghjkl;'", " asdfghjkl:\""},
		{" zxcvbnm,./", " zxcvbnm<>?"},
	}
	m := map[rune][2]int{}
	for i, row := range rows {
		for _, keys := range row {
			for j, r := range []rune(keys) {
				if r != ' ' {
					m[r] = [2]int{i, j}
				}
			}
		}
	}
	return m
}()
