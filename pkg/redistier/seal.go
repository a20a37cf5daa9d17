package redistier

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// MinSecretLen is the shortest secret New accepts.
const MinSecretLen = 32

// formatV1 is the first byte of every sealed value: the format version.
const formatV1 = 1

// Sealed layout: version (1) | key id (4) | nonce (12) | AES-256-GCM ciphertext and tag.
const (
	keyIDLen    = 4
	nonceLen    = 12
	sealedExtra = 1 + keyIDLen + nonceLen + 16
)

// HKDF info strings: one key per purpose, so the key-name MAC key and the
// value key are independent even though both come from one secret.
const (
	infoNames = "ory-ext-authz redistier v1 key names"
	infoValue = "ory-ext-authz redistier v1 values"
	infoKeyID = "ory-ext-authz redistier v1 key id"
)

// errForged is any sealed value or message that does not open.
var errForged = errors.New("value failed authentication")

// secretKey is what one configured secret gives.
type secretKey struct {
	id   [keyIDLen]byte
	mac  []byte // HMAC-SHA256 key for key names and ids
	aead cipher.AEAD
}

func newSecretKey(secret []byte) (*secretKey, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("secret has %d bytes, want at least %d", len(secret), MinSecretLen)
	}
	mac, err := hkdf.Key(sha256.New, secret, nil, infoNames, 32)
	if err != nil {
		return nil, err
	}
	enc, err := hkdf.Key(sha256.New, secret, nil, infoValue, 32)
	if err != nil {
		return nil, err
	}
	id, err := hkdf.Key(sha256.New, secret, nil, infoKeyID, keyIDLen)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &secretKey{mac: mac, aead: aead}
	copy(k.id[:], id)
	return k, nil
}

// tag is the URL-safe base64 HMAC of the parts (each length-prefixed, so
// no two part lists share an input).
func (k *secretKey) tag(parts ...[]byte) string {
	m := hmac.New(sha256.New, k.mac)
	var n [4]byte
	for _, p := range parts {
		n[0], n[1], n[2], n[3] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
		m.Write(n[:])
		m.Write(p)
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// seal encrypts plaintext bound to ad (the Redis key name or channel), so
// that a value moved to another key does not open.
func (k *secretKey) seal(ad string, plaintext []byte) []byte {
	out := make([]byte, 1+keyIDLen+nonceLen, sealedExtra+len(plaintext))
	out[0] = formatV1
	copy(out[1:], k.id[:])
	nonce := out[1+keyIDLen:]
	// crypto/rand.Read never fails (Go 1.24+).
	_, _ = rand.Read(nonce)
	return k.aead.Seal(out, nonce, plaintext, []byte(ad))
}

// keyring is the configured secrets, current first.
type keyring []*secretKey

// open authenticates and decrypts a sealed value with whichever secret its
// key id names (all of them on an id collision).
func (r keyring) open(ad string, sealed []byte) ([]byte, error) {
	if len(sealed) < sealedExtra || sealed[0] != formatV1 {
		return nil, errForged
	}
	id, nonce, ct := sealed[1:1+keyIDLen], sealed[1+keyIDLen:1+keyIDLen+nonceLen], sealed[1+keyIDLen+nonceLen:]
	for _, k := range r {
		if !hmac.Equal(k.id[:], id) {
			continue
		}
		if pt, err := k.aead.Open(nil, nonce, ct, []byte(ad)); err == nil {
			return pt, nil
		}
	}
	return nil, errForged
}

// current writes values; oldest seals what every replica in a rotation must
// read (pause markers, invalidation messages).
func (r keyring) current() *secretKey { return r[0] }
func (r keyring) oldest() *secretKey  { return r[len(r)-1] }
