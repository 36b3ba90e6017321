package password

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyRejectsWeakPasswords(t *testing.T) {
	user := []string{"Alice.Example", "alice.smith@Example.org"}
	tests := []struct {
		name   string
		policy Policy
		pw     string
		inputs []string
		rule   Rule
	}{
		{"empty", Policy{}, "", nil, RuleTooShort},
		{"14 characters", Policy{}, "tulip-kettle-z", nil, RuleTooShort},
		// NFKC composes "e" + U+0301 into one "é": 14 code points, not 16.
		{"decomposed accents counted once", Policy{}, "cafe\u0301 cafe\u0301 x", nil, RuleTooShort},
		{"emoji are one character each", Policy{}, strings.Repeat("🔥🌊", 7), nil, RuleTooShort},
		{"too long", Policy{}, strings.Repeat("word salad ", 24), nil, RuleTooLong},
		{"custom maximum", Policy{MaxLength: 20}, "purple monkey dishwasher", nil, RuleTooLong},
		{"custom minimum", Policy{MinLength: 30}, "purple monkey dishwasher", nil, RuleTooShort},
		{"invalid UTF-8", Policy{}, "purple monkey \xff dishwasher", nil, RuleEncoding},

		{"listed", Policy{}, "correcthorsebatterystaple", nil, RuleCommon},
		{"listed, other case", Policy{}, "CorrectHorseBatteryStaple", nil, RuleCommon},
		{"listed, fullwidth letters", Policy{}, "ｉｌｏｖｅｙｏｕｆｏｒｅｖｅｒ", nil, RuleCommon},
		{"listed plus digits", Policy{}, "password1234567890", nil, RuleCommon},
		{"listed plus year and symbols", Policy{}, "!!Superman2024!!", nil, RuleCommon},
		{"listed with lowered minimum", Policy{MinLength: 8}, "Password1", nil, RuleCommon},
		{"listed with lowered minimum 2", Policy{MinLength: 8}, "qwerty123", nil, RuleCommon},
		{"listed plus year", Policy{MinLength: 8}, "Summer2024!", nil, RuleCommon},
		{"service name", Policy{}, "thingid12345678", nil, RuleCommon},

		{"user name", Policy{MinLength: 8}, "alice.example", user, RuleUserInput},
		{"user name, other case, padded", Policy{}, "ALICE.EXAMPLE2024!", user, RuleUserInput},
		{"e-mail address", Policy{}, "alice.smith@example.org", user, RuleUserInput},
		{"e-mail local part repeated", Policy{}, "alice.smithalice.smith", user, RuleUserInput},
		{"e-mail local part plus sequence", Policy{}, "alice.smith123456789", user, RuleUserInput},

		{"one character", Policy{}, "aaaaaaaaaaaaaaa", nil, RulePredictable},
		{"digit sequence wrapping", Policy{}, "123456789012345", nil, RulePredictable},
		{"descending", Policy{}, "987654321098765", nil, RulePredictable},
		{"alphabet", Policy{}, "abcdefghijklmnopq", nil, RulePredictable},
		{"keyboard row", Policy{}, "poiuytrewqlkjhgf", nil, RulePredictable},
		{"keyboard columns", Policy{}, "2wsx3edc4rfv5tgb", nil, RulePredictable},
		{"shifted keyboard row", Policy{}, "!@#$%^&*()_+!@#$", nil, RulePredictable},
		{"two runs", Policy{}, "aaaaaaaabbbbbbbb", nil, RulePredictable},
		{"sequence pairs", Policy{}, "1234abcd5678efgh", nil, RulePredictable},
		{"repeated word", Policy{}, "tulipstulipstulips", nil, RulePredictable},
		{"repeated random chunk", Policy{}, "x7#kx7#kx7#kx7#k", nil, RulePredictable},
		{"repetition cut short", Policy{}, "hunter2hunter2hun", nil, RulePredictable},
		{"short policy, short junk", Policy{MinLength: 8}, "zzzzzzzz", nil, RulePredictable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.pw, tt.inputs...)
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Check(%q) = %v, want a *PolicyError with rule %s", tt.pw, err, tt.rule)
			}
			if pe.Rule != tt.rule {
				t.Fatalf("Check(%q) broke rule %s (%v), want %s", tt.pw, pe.Rule, pe, tt.rule)
			}
			if pe.Error() == "" || strings.Contains(pe.Error(), tt.pw) && tt.pw != "" {
				t.Fatalf("advice %q must be non-empty and must not echo the password", pe.Error())
			}
		})
	}
}

func TestPolicyAcceptsGoodPasswords(t *testing.T) {
	user := []string{"alice", "alice@example.org"}
	for _, pw := range []string{
		"purple monkey dishwasher",
		"tulip kettle marble 42",
		"Zq8#mW2!pL5vR9xT",
		"correct horse battery stapler on the moon",
		"alice in wonderland drinks tea", // contains the user name but is more than that
		"ça-tourne-bien, non ?",
		"緑の猫が屋根の上で静かに眠っている",
		"🔥🌊🌲🪨 four emoji and words",
		"kea9 lamp-post orbit",
		strings.Repeat("sun moon tide ", 18)[:256-4] + "ab12", // exactly 256, not periodic
	} {
		if err := (Policy{}).Check(pw, user...); err != nil {
			t.Errorf("Check(%q) = %v, want nil", pw, err)
		}
	}
}

func TestPolicyAdviceNamesLength(t *testing.T) {
	err := Policy{MinLength: 20}.Check("short but sweet")
	want := "use at least 20 characters; a passphrase of several unrelated words works well"
	if err == nil || err.Error() != want {
		t.Fatalf("Check = %v, want %q", err, want)
	}
}

func TestBlocklistIsLoaded(t *testing.T) {
	if len(blocklist) < 2000 {
		t.Fatalf("blocklist has %d entries, want the embedded list of at least 2000", len(blocklist))
	}
	for w := range blocklist {
		if w != strings.ToLower(w) || strings.TrimSpace(w) != w {
			t.Fatalf("blocklist entry %q is not lower-case and trimmed", w)
		}
	}
}

func FuzzPolicyCheck(f *testing.F) {
	f.Add("purple monkey dishwasher", "alice")
	f.Add("123456789012345", "")
	f.Add("\xff\xfe", "x@y")
	f.Fuzz(func(t *testing.T, pw, user string) {
		err := Policy{}.Check(pw, user, user+"@example.org")
		var pe *PolicyError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("Check returned %T, want *PolicyError", err)
		}
	})
}

func TestHashVerify(t *testing.T) {
	h, err := Hash("caf\u00e9 au lait every morning")
	if err != nil {
		t.Fatal(err)
	}
	if !WellFormed(h) {
		t.Fatalf("own hash not well formed: %s", h)
	}
	// The decomposed spelling of the same text verifies (NFKC before hashing).
	if ok, err := Verify(h, "cafe\u0301 au lait every morning"); err != nil || !ok {
		t.Errorf("decomposed form: %v %v", ok, err)
	}
	if ok, _ := Verify(h, "cafe au lait every morning"); ok {
		t.Error("a different password verified")
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$", "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=99999999,t=3,p=4$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "plaintext"} {
		if _, err := Verify(bad, "x"); err == nil {
			t.Errorf("Verify accepted malformed hash %q", bad)
		}
	}
}
