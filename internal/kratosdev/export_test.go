package kratosdev

import "context"

// APILoginTOTPCode is APILoginAAL2 with a given code instead of the current
// one, for tests of wrong codes.
func (k *Kratos) APILoginTOTPCode(ctx context.Context, sessionToken, code string) error {
	return k.apiLoginAAL2(ctx, sessionToken, map[string]string{"method": "totp", "totp_code": code})
}

// BrowserLoginTOTPCode is BrowserLoginAAL2 with a given code.
func (k *Kratos) BrowserLoginTOTPCode(ctx context.Context, cookie, code string) (string, error) {
	return k.browserLoginAAL2(ctx, cookie, map[string]string{"method": "totp", "totp_code": code})
}
