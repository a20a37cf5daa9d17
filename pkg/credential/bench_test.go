package credential

import "testing"

// BenchmarkExtract runs extraction on a browser's headers: 14 cookies, the
// session cookie in the middle, in both of Envoy's header encodings.
func BenchmarkExtract(b *testing.B) {
	cookie := "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; theme=dark; lang=en; " +
		"consent=necessary%2Canalytics; _fbp=fb.1.1700000000000.1234567890; ajs_anonymous_id=%2212345678-1234%22; " +
		"ory_kratos_session=MTcwMDAwMDAwMHxEdi1CQkFFQ180SUFBUkFCRUFBQVJfLUNBQUVHYzNSeWFXNW5EQThBRFhObGMzTnBiMjVmZEc5clpXNEdjM1J5YVc1bkRDSUFJRFl3ZDNGdFpsaFNhbkZrVjBWWU5rOUhORXBpVVdFeVpXdzRlV0ZxTjFKTHxvgA8n0iQjJGk2u1wQbN0bE1N2zRk5e6vI8Q==" +
		"; csrf_token_abc=Zm9vYmFyYmF6cXV4; intercom-id-x=12345678-aaaa-bbbb-cccc-1234567890ab; sidebar=collapsed; tz=Europe%2FBerlin; ab_test=B; _hjid=abc"
	m := map[string]string{
		":method": "GET", ":path": "/api/orders", ":authority": "app.example.org", "accept": "application/json",
		"user-agent": "Mozilla/5.0", "x-request-id": "abc", "cookie": cookie,
	}
	e := NewExtractor([]string{"ory_kratos_session", "ory_session_*"}, "x-session-token", 16<<10)
	b.Run("headers", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if c, err := e.Extract(Headers{Map: m}); err != nil || c.Kind != KindCookie {
				b.Fatal(c, err)
			}
		}
	})
	raw := rawOf(m)
	b.Run("header_map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if c, err := e.Extract(Headers{Raw: raw}); err != nil || c.Kind != KindCookie {
				b.Fatal(c, err)
			}
		}
	})
}
