package middleware_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
)

// referenceDecode is what decodeJSONObject must do: encoding/json with
// UseNumber, one object, nothing after it but whitespace.
func referenceDecode(b []byte) (map[string]any, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, false
	}
	return m, true
}

func checkDecode(t *testing.T, in []byte) {
	t.Helper()
	got, err := middleware.DecodeJSONObject(in)
	want, ok := referenceDecode(in)
	if ok != (err == nil) {
		t.Fatalf("DecodeJSONObject(%q): err = %v; encoding/json valid = %v", in, err, ok)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeJSONObject(%q) = %#v; encoding/json says %#v", in, got, want)
	}
}

// checkHeader holds the JWT header reader to what the verifier would read
// in encoding/json's map of the header.
func checkHeader(t *testing.T, in []byte) {
	t.Helper()
	alg, kid, hasKid, kidIsString, crit, err := middleware.DecodeJWTHeader(string(in))
	want, ok := referenceDecode(in)
	if ok != (err == nil) {
		t.Fatalf("DecodeJWTHeader(%q): err = %v; encoding/json valid = %v", in, err, ok)
	}
	if !ok {
		return
	}
	wantAlg, _ := want["alg"].(string)
	k, wantHasKid := want["kid"]
	wantKid, wantKidIsString := k.(string)
	_, wantCrit := want["crit"]
	if alg != wantAlg || kid != wantKid || hasKid != wantHasKid || kidIsString != (wantHasKid && wantKidIsString) || crit != wantCrit {
		t.Fatalf("DecodeJWTHeader(%q) = alg %q, kid %q (there %v, string %v), crit %v; encoding/json's map says %v",
			in, alg, kid, hasKid, kidIsString, crit, want)
	}
}

var jsonSeeds = []string{
	`{"alg":"HS256","typ":"JWT"}`, `{"alg":"HS256","kid":"k1"}`, `{"alg":"HS256","kid":7}`, `{"alg":7}`,
	`{"alg":"none","alg":"HS256"}`, `{"alg":"HS256","alg":null}`, `{"kid":"a","kid":{"x":1}}`, `{"kid":1,"kid":"a"}`,
	`{"\u0061lg":"HS\u0032\u0035\u0036","crit":null}`, `{"crit":["b64"],"b64":false,"alg":"HS256"}`,
	"{\"alg\":\"HS256\",\"x\":[1,{\"y\":\"\xff\"}]}", `{"alg":"HS256","x":[1,2,}`,
	`{}`, ` { } `, `{"a":1}`, `{"sub":"u1","exp":1700000000,"aud":["a","b"],"x":{"y":[true,false,null]}}`,
	`{"n":-0.5e+10,"m":0,"k":1E3,"big":12345678901234567890}`,
	`{"a":"\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t"}`, `{"a":"\ud800"}`, `{"a":"\ud800\u0041"}`,
	"{\"a\":\"\xff\"}", "{\"\xe9\":1}", `{"a":1,"a":2}`, `{"a":[]}`, `{"a":[{}]}`,
	`[]`, `"s"`, `1`, `null`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`,
	`{"a":1,}`, `{,}`, `{"a" 1}`, `{"a":1}}`, `{"a":1} x`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}",
	`{"a":[1,]}`, `{"a":[1 2]}`, `{'a':1}`, `{"a":1`, `{"a":"`, `{"a":"\`, "", " ", `{"a":NaN}`,
	`{"a":+1}`, `{"a":Infinity}`, `{"a":true false}`,
}

func TestDecodeJSONObject(t *testing.T) {
	t.Parallel()
	for _, s := range jsonSeeds {
		checkDecode(t, []byte(s))
		checkHeader(t, []byte(s))
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	checkDecode(t, []byte(`{"a":`+deep+`}`)) // 10001 levels: over the limit
	checkHeader(t, []byte(`{"a":`+deep+`}`))
	deep = strings.Repeat("[", 9998) + strings.Repeat("]", 9998)
	checkDecode(t, []byte(`{"a":`+deep+`}`))
	checkHeader(t, []byte(`{"a":`+deep+`}`))
}

// FuzzDecodeJSONObject holds the claims decoder, and the header reader,
// to encoding/json on any input.
func FuzzDecodeJSONObject(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDecode(t, in)
		checkHeader(t, in)
	})
}
