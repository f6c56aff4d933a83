package iso

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The vectors were computed independently with OpenSSL's DES and HMAC.
// The first is also the published ANSI X9.9 / FIPS 113 example: its
// single-DES CBC-MAC under 0123456789ABCDEF is 70A30640CC76DD8B, and
// X9.19's final decipher-encipher under the second key half turns that
// into A1C72E74EA3FA9B6.
func TestMACVectors(t *testing.T) {
	x919 := mustHex(t, "0123456789ABCDEFFEDCBA9876543210")
	for _, c := range []struct {
		alg, key, data, want string
	}{
		{MACX919, "0123456789ABCDEF0123456789ABCDEF", "Now is the time for all ", "70a30640cc76dd8b"}, // K1 = K2: plain CBC-MAC
		{MACX919, hex.EncodeToString(x919), "Now is the time for all ", "a1c72e74ea3fa9b6"},
		{MACX919, hex.EncodeToString(x919), "0200 goldcard mac", "d7fa9d457ac2dfce"}, // padded with 7 zero bytes
		{MACHMACSHA256, "000102030405060708090a0b0c0d0e0f", "0200 goldcard mac", "c4ec05d371c10e32"},
	} {
		k, err := NewMACKey(c.alg, mustHex(t, c.key))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(k.Sum([]byte(c.data))); got != c.want {
			t.Errorf("%s(%q) = %s, want %s", c.alg, c.data, got, c.want)
		}
	}
	for _, c := range []struct {
		alg string
		n   int
	}{{MACX919, 8}, {MACX919, 24}, {MACHMACSHA256, 8}, {MACHMACSHA256, 65}, {"des", 16}} {
		if _, err := NewMACKey(c.alg, make([]byte, c.n)); err == nil {
			t.Errorf("NewMACKey(%s, %d bytes) accepted", c.alg, c.n)
		}
	}
}

// TestSignVerify: a signed message verifies, in DE64 without a secondary
// bitmap and in DE128 with one, in both shipped dialects; any change to
// it, or another key, does not; a message without a MAC is told apart.
func TestSignVerify(t *testing.T) {
	key, _ := NewMACKey(MACX919, mustHex(t, "0123456789ABCDEFFEDCBA9876543210"))
	// (DES ignores each byte's lowest bit: the keys differ elsewhere.)
	other, _ := NewMACKey(MACX919, mustHex(t, "0123456789ABCDEFFEDCBA9876543212"))
	for _, name := range BuiltinNames() {
		d, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, secondary := range []bool{false, true} {
			m := d.NewMessage()
			m.MTI("0200")
			fields := map[int]string{2: "6228480000000202", 3: "000000", 4: "000000010000", 11: "123456", 41: "ATM00001", 52: "3A7F2C9D1E4B8F60"}
			if secondary {
				fields[90] = "020012345611251010100000001234000000000000"
			}
			for id, v := range fields {
				if err := d.SetField(m, id, v); err != nil {
					t.Fatal(err)
				}
			}
			plain, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			signed, err := key.Sign(d, plain)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			u, err := d.Unpack(signed)
			if err != nil {
				t.Fatal(err)
			}
			want := 64
			if secondary {
				want = 128
			}
			if MACField(u) != want || u.GetField(want) == nil {
				t.Fatalf("%s: MAC in DE%d, want DE%d", name, MACField(u), want)
			}
			if pin, _ := u.GetString(52); pin != fields[52] {
				t.Errorf("%s: DE52 packed and read back as %q", name, pin)
			}
			if err := key.Verify(signed, u); err != nil {
				t.Errorf("%s DE%d: signed message does not verify: %v", name, want, err)
			}
			if err := other.Verify(signed, u); !errors.Is(err, ErrBadMAC) {
				t.Errorf("%s DE%d: another key: %v", name, want, err)
			}
			// A changed amount: the MAC no longer matches.
			tampered := bytes.Replace(signed, []byte("000000010000"), []byte("000000990000"), 1)
			tu, err := d.Unpack(tampered)
			if err != nil {
				t.Fatal(err)
			}
			if err := key.Verify(tampered, tu); !errors.Is(err, ErrBadMAC) {
				t.Errorf("%s DE%d: tampered message: %v", name, want, err)
			}
			pu, _ := d.Unpack(plain)
			if err := key.Verify(plain, pu); !errors.Is(err, ErrNoMAC) {
				t.Errorf("%s: message without a MAC: %v", name, err)
			}
		}
	}
}

// BenchmarkMAC: verifying a request's MAC and signing a response, as a
// bank with MAC costs the switch on each message.
func BenchmarkMAC(b *testing.B) {
	d, _ := Builtin(DefaultDialect)
	m := d.NewMessage()
	m.MTI("0200")
	for id, v := range map[int]string{2: "6228480000000202", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "123456",
		12: "101010", 13: "1125", 32: "1234", 37: "000000000001", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156"} {
		_ = d.SetField(m, id, v)
	}
	plain, _ := m.Pack()
	for _, alg := range []string{MACX919, MACHMACSHA256} {
		key, _ := NewMACKey(alg, make([]byte, 16))
		signed, err := key.Sign(d, plain)
		if err != nil {
			b.Fatal(err)
		}
		u, _ := d.Unpack(signed)
		b.Run(alg+"/verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := key.Verify(signed, u); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/sign", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := key.Sign(d, plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
