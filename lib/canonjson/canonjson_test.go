package canonjson

import (
	"encoding/json"
	"testing"
)

// TestMarshal: RFC 8785 order (UTF-16 code units: U+FF61 sorts after
// U+1F600, unlike in UTF-8 byte order), compact, nulls, escapes; and what
// is written parses back as the same JSON.
func TestMarshal(t *testing.T) {
	doc := map[string]any{
		"b": []string{"x", "<&>\u2028"}, "a": nil, "\uff61": true, "\U0001F600": false,
		"n": map[string]any{"z": []any{nil, "q\"\\\n\x01"}, "y": map[string]string{"k": "v"}},
		"e": []string(nil), "m": map[string]any{},
	}
	got, err := Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":null,"b":["x","<&>` + "\u2028" + `"],"e":null,"m":{},"n":{"y":{"k":"v"},"z":[null,"q\"\\\n\u0001"]},"` + "\U0001F600" + `":false,"` + "\uff61" + `":true}`
	if string(got) != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	var back any
	if err := json.Unmarshal(got, &back); err != nil {
		t.Error(err)
	}
	if _, err := Marshal(map[string]any{"n": 1}); err == nil {
		t.Error("a number was encoded")
	}
}
