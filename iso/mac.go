package iso

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/moov-io/iso8583"
)

// MAC algorithms.
const (
	MACX919       = "x9.19"
	MACHMACSHA256 = "hmac-sha256"
)

// MACSize is the length of a MAC in DE64 or DE128, in bytes.
const MACSize = 8

// Errors of message authentication.
var (
	ErrNoMAC  = errors.New("message carries no MAC")
	ErrBadMAC = errors.New("MAC does not verify")
)

// MACKey computes one algorithm's MAC under one key.
//
// The MAC input is the message exactly as sent, without its length
// header, from the first byte of the MTI up to and not including the MAC
// field's own bytes: the MAC field is always the message's last field
// (DE64 when the message has no secondary bitmap, DE128 when it has one),
// and its bit is set in the bitmap the MAC covers.
//
// x9.19 is the ANSI X9.19 retail MAC: the input, padded with zero bytes to
// a multiple of 8 (none when it is one already: ISO/IEC 9797-1 method 1),
// is enciphered in CBC mode with single DES under the key's first half
// and a zero IV; the last block is then deciphered under the second half
// and enciphered again under the first. hmac-sha256 is the first 8 bytes
// of HMAC-SHA-256 of the input.
type MACKey struct {
	alg         string
	key         []byte
	left, right cipher.Block // x9.19's key halves, scheduled once
}

// NewMACKey checks key for alg.
func NewMACKey(alg string, key []byte) (*MACKey, error) {
	switch alg {
	case MACX919:
		if len(key) != 16 {
			return nil, fmt.Errorf("an %s key is 16 bytes, not %d", alg, len(key))
		}
	case MACHMACSHA256:
		if len(key) < 16 || len(key) > 64 {
			return nil, fmt.Errorf("an %s key is 16 to 64 bytes, not %d", alg, len(key))
		}
	default:
		return nil, fmt.Errorf("unknown MAC algorithm %q", alg)
	}
	k := &MACKey{alg: alg, key: append([]byte(nil), key...)}
	if alg == MACX919 {
		k.left, _ = des.NewCipher(k.key[:8])
		k.right, _ = des.NewCipher(k.key[8:16])
	}
	return k, nil
}

// Equal reports whether k and o are the same algorithm and key.
func (k *MACKey) Equal(o *MACKey) bool {
	if k == nil || o == nil {
		return k == o
	}
	return k.alg == o.alg && subtle.ConstantTimeCompare(k.key, o.key) == 1
}

// String never shows the key.
func (k *MACKey) String() string { return k.alg + " key" }

// Sum is the MAC of data.
func (k *MACKey) Sum(data []byte) []byte {
	if k.alg == MACHMACSHA256 {
		h := hmac.New(sha256.New, k.key)
		h.Write(data)
		return h.Sum(nil)[:MACSize]
	}
	left, right := k.left, k.right
	var block [8]byte
	for i := 0; i < len(data) || i == 0; i += 8 {
		for j := 0; j < 8 && i+j < len(data); j++ {
			block[j] ^= data[i+j]
		}
		left.Encrypt(block[:], block[:])
	}
	right.Decrypt(block[:], block[:])
	left.Encrypt(block[:], block[:])
	return block[:]
}

// MACField is the field that carries msg's MAC: DE128 when msg has any
// field of the secondary bitmap, DE64 otherwise.
func MACField(msg *iso8583.Message) int {
	for id := range msg.GetFields() {
		if id > 64 {
			return 128
		}
	}
	return 64
}

// Verify checks the MAC of a request: body is the message as read
// (without its length header) and msg its unpacked form. It returns
// ErrNoMAC or ErrBadMAC when the MAC is missing or wrong.
func (k *MACKey) Verify(body []byte, msg *iso8583.Message) error {
	id := MACField(msg)
	f, ok := msg.GetFields()[id]
	if !ok {
		return ErrNoMAC
	}
	packed, err := f.Pack()
	if err != nil || len(packed) > len(body) {
		return ErrNoMAC
	}
	got, err := msg.GetField(id).Bytes()
	if err != nil || len(got) != MACSize {
		return ErrNoMAC
	}
	if !hmac.Equal(got, k.Sum(body[:len(body)-len(packed)])) {
		return ErrBadMAC
	}
	return nil
}

// Sign sets the MAC of a packed message, body, and returns it packed
// again with the MAC in its last field.
func (k *MACKey) Sign(d *Dialect, body []byte) ([]byte, error) {
	msg, err := d.Unpack(body)
	if err != nil {
		return nil, err
	}
	id := MACField(msg)
	if err := msg.BinaryField(id, make([]byte, MACSize)); err != nil {
		return nil, fmt.Errorf("DE%d: %w", id, err)
	}
	zeroed, err := msg.Pack()
	if err != nil {
		return nil, err
	}
	packed, err := msg.GetFields()[id].Pack()
	if err != nil {
		return nil, err
	}
	if err := msg.BinaryField(id, k.Sum(zeroed[:len(zeroed)-len(packed)])); err != nil {
		return nil, err
	}
	return msg.Pack()
}
