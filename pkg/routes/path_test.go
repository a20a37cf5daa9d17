package routes

import (
	"slices"
	"strings"
	"testing"
)

// TestNormalizePath: Envoy's own vectors for normalize_path and
// merge_slashes (test/common/http/path_utility_test.cc), and the cases of
// Chromium's canonicalizer this port reproduces.
func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		// PathUtilityTest.AlreadyNormalPaths
		{"/xyz", "/xyz", true},
		{"/x/y/z", "/x/y/z", true},
		// PathUtilityTest.InvalidPaths: Envoy answers 400.
		{"/xyz/.%00../abc", "", false},
		{"/xyz/%00.%00./abc", "", false},
		{"/xyz/AAAAA%%0000/abc", "", false},
		{"/a/\x00c", "", false},
		// PathUtilityTest.NormalizeValidPaths
		{"/a/b/../c", "/a/c", true},
		{"/a/b/./c", "/a/b/c", true},
		{"a/b/../c", "/a/c", true},
		{"/a/b/../../../../c", "/c", true},
		{"/a/..\\c", "/c", true},
		{"/%c0%af", "/%c0%af", true},
		{"/%5c%25", "/%5c%25", true},
		{"/a/b/%2E%2E/c", "/a/c", true},
		{"/a/b/%2E./c", "/a/c", true},
		{"/a/b/%2E/c", "/a/b/c", true},
		{"..", "/", true},
		{"/../a/b", "/a/b", true},
		{"/./a/b", "/a/b", true},
		// PathUtilityTest.NormalizeCasePath
		{"/A/B/C", "/A/B/C", true},
		{"/a/b/%2e%2e/c", "/a/c", true},
		{"/a/%2F%2f/c", "/a/%2F%2f/c", true},
		// PathUtilityTest.MergeSlashes (after normalization, as the HCM runs them)
		{"", "/", true},
		{"/a//b/c/", "/a/b/c/", true},
		{"//a/b/c", "/a/b/c", true},
		{"/a/b/c//", "/a/b/c/", true},
		{"/a////b/c", "/a/b/c", true},
		{"/a//b?a=///c", "/a/b", true},
		{"//a/?b", "/a/", true},
		{"//", "//", true}, // Envoy's merge keeps both slashes of an empty path
		// Unreserved characters decoded, others kept with their hex case,
		// characters outside the path's set escaped.
		{"/%41%62%7e%2d", "/Ab~-", true},
		{"/%3b%3B", "/%3b%3B", true},
		{"/a b\"<>^`{|}", "/a%20b%22%3C%3E%5E%60%7B%7C%7D", true},
		{"/caf\xc3\xa9", "/caf%C3%A9", true},
		{"/a#b", "/a%23b", true},
		{"/a;b=1/../c", "/c", true},
		{"/a/..;/b", "/a/..;/b", true},
		// Invalid escapes copied; a decoded character never completes one.
		{"/%zz/%4", "/%zz/%4", true},
		{"/%%30%30", "/%2500", true},
		{"/%%300", "/%2500", true},
		{"/%2%30", "/%2520", true}, // "%2" then "%30" decoded: "%20" would be new
		// Dots that are not segments stay.
		{"/a/.b/..c/...", "/a/.b/..c/...", true},
		{"/a/b/..", "/a/", true},
		{"/a/b/.", "/a/b/", true},
		{"/a/%2e", "/a/", true},
	} {
		got, ok := NormalizePath(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestIsNormal: the allocation-free test agrees with the full
// normalization on every path it accepts.
func TestIsNormal(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/b/", "/.a", "/a.", "/a/..b", "/a/b..", "/a-b_c~d", "/a:b@c!$&'()*+,=", "/A/[x]"} {
		if !isNormal(p) {
			t.Errorf("isNormal(%q) = false", p)
		}
		if n, ok := NormalizePath(p); !ok || n != p {
			t.Errorf("NormalizePath(%q) = %q, %v; want it unchanged", p, n, ok)
		}
	}
	for _, p := range []string{"", "a", "//", "/a//b", "/.", "/..", "/a/./b", "/a/../b", "/a\\b", "/%41", "/a;b", "/a b", "/a#"} {
		if isNormal(p) {
			t.Errorf("isNormal(%q) = true", p)
		}
	}
}

func TestReadings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"/public/x?q=../admin", []string{"/public/x"}, true},
		{"/public/../admin", []string{"/admin", "/public/../admin"}, true},
		{"//admin", []string{"/admin", "//admin"}, true},
		{"/public%2F..%2Fadmin", []string{"/public%2F..%2Fadmin", "/admin"}, true},
		{"/public/..%5Cadmin", []string{"/public/..%5Cadmin", "/admin"}, true},
		{"/public/..;/admin", []string{"/public/..;/admin", "/admin"}, true},
		{"/public;x=1/../admin", []string{"/admin", "/public;x=1/../admin"}, true},
		{"/public#/../../admin", []string{"/admin", "/public#/../../admin", "/public"}, true},
		{"/%61dmin", []string{"/admin", "/%61dmin"}, true},
		{"/a%252F..%252Fb", []string{"/a%252F..%252Fb", "/a%2F..%2Fb"}, true},
		{"/x/%2500", []string{"/x/%2500", "/x/%00"}, false},
	} {
		var buf [maxReadings]string
		got, ok := readings(tc.in, &buf)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("readings(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMergeSlashes(t *testing.T) {
	for in, want := range map[string]string{"": "", "a//b/c": "a/b/c", "a//b/c/": "a/b/c/", "/a": "/a", "/a///b/c": "/a/b/c"} {
		if got := mergeSlashes(in); got != want {
			t.Errorf("mergeSlashes(%q) = %q, want %q", in, got, want)
		}
	}
	if got := stripParams("/a;x/b;y=1;z/c"); got != "/a/b/c" {
		t.Errorf("stripParams = %q", got)
	}
	if got := unescapeSlashes("/a%2fb%5Cc%2Ed"); got != "/a/b\\c%2Ed" {
		t.Errorf("unescapeSlashes = %q", got)
	}
	if got := unescapeAll("/a%2fb%zz%4"); got != "/a/b%zz%4" || strings.Contains(unescapeAll("%41"), "%") {
		t.Errorf("unescapeAll = %q", got)
	}
}
