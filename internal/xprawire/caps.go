package xprawire

import (
	"math"
	"strconv"
	"strings"
)

// Caps reads a hello capability dict with the typedict semantics of both xpra
// generations: flat keys ("a.b", 3.1), nested dicts ({"a":{"b":v}}, 6.x), and
// nested dicts whose "" key holds the value itself ({"a":{"":v}}); keys may be
// str or bytes.
type Caps struct{ Dict }

// maxCapsDepth bounds the nested lookup (a key has at most this many dots honoured).
const maxCapsDepth = 16

// Get returns the value for key, trying the flat key first, then every nested
// split of key at its dots. A found value that is a dict with a "" key is
// replaced by that value.
func (c Caps) Get(key string) (any, bool) {
	v, ok := capsGet(c.Dict, key, 0)
	if !ok {
		return nil, false
	}
	return unwrapEmptyKey(v), true
}

// Sub returns the nested dict for key (flat-prefixed keys "key.x" are
// collected too), for walking a sub-tree such as "encoding" or "proxy".
func (c Caps) Sub(key string) Caps {
	var out Dict
	if v, ok := capsGet(c.Dict, key, 0); ok {
		if d, ok := asDict(v); ok {
			out = append(out, d...)
		}
	}
	prefix := key + "."
	for _, kv := range c.Dict {
		if k, ok := keyString(kv.Key); ok && strings.HasPrefix(k, prefix) {
			out = append(out, KV{k[len(prefix):], kv.Value})
		}
	}
	return Caps{out}
}

func asDict(v any) (Dict, bool) {
	switch x := v.(type) {
	case Dict:
		return x, true
	case Caps:
		return x.Dict, true
	case map[string]any:
		return sortedDict(x), true
	}
	return nil, false
}

func capsGet(d Dict, key string, depth int) (any, bool) {
	if v, ok := d.Get(key); ok {
		return v, true
	}
	if depth >= maxCapsDepth {
		return nil, false
	}
	for i := 0; i < len(key); i++ {
		if key[i] != '.' {
			continue
		}
		sub, ok := d.Get(key[:i])
		if !ok {
			continue
		}
		sd, ok := asDict(sub)
		if !ok {
			continue
		}
		if v, ok := capsGet(sd, key[i+1:], depth+1); ok {
			return v, true
		}
	}
	return nil, false
}

func unwrapEmptyKey(v any) any {
	for range maxCapsDepth {
		d, ok := asDict(v)
		if !ok {
			return v
		}
		inner, ok := d.Get("")
		if !ok {
			return v
		}
		v = inner
	}
	return v
}

// Has reports whether key is present in any form.
func (c Caps) Has(key string) bool {
	_, ok := c.Get(key)
	return ok
}

// Truthy returns key read as Python's bool() reads it, which is how xpra
// reads its boolean caps (typedict.boolget): False, None, zero, and empty
// strings, bytes, lists and dicts are false; everything else is true,
// "no", "false" and "0" included. A missing key gives def.
func (c Caps) Truthy(key string, def bool) bool {
	v, ok := c.Get(key)
	if !ok {
		return def
	}
	return truthy(v)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case float32:
		return x != 0
	case string:
		return x != ""
	case []byte:
		return len(x) > 0
	case []any:
		return len(x) > 0
	case Dict:
		return len(x) > 0
	}
	if i, b, ok := intValue(v); ok {
		return b != nil && b.Sign() != 0 || b == nil && i != 0
	}
	return true
}

// Bool returns key as a bool: bools, non-zero numbers, and the strings (str or
// bytes, any case) "true", "1", "yes", "on" are true; "false", "0", "no",
// "off" and "" are false; anything else, or a missing key, gives def.
func (c Caps) Bool(key string, def bool) bool {
	v, ok := c.Get(key)
	if !ok {
		return def
	}
	switch x := v.(type) {
	case bool:
		return x
	case float64:
		return x != 0
	case float32:
		return x != 0
	case string:
		return strBool(x, def)
	case []byte:
		return strBool(string(x), def)
	}
	if i, b, ok := intValue(v); ok {
		return b != nil || i != 0
	}
	return def
}

func strBool(s string, def bool) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on":
		return true
	case "false", "0", "no", "off", "":
		return false
	}
	return def
}

// Str returns key as a string when it is a str or bytes (a dict with a ""
// key yields that value).
func (c Caps) Str(key string) (string, bool) {
	v, ok := c.Get(key)
	if !ok {
		return "", false
	}
	return keyString(v)
}

// Int returns key as an int64: integers (in range), bools, integral floats,
// and decimal strings or bytes.
func (c Caps) Int(key string) (int64, bool) {
	v, ok := c.Get(key)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case float64:
		return floatInt(x)
	case float32:
		return floatInt(float64(x))
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	case []byte:
		n, err := strconv.ParseInt(strings.TrimSpace(string(x)), 10, 64)
		return n, err == nil
	}
	if i, b, ok := intValue(v); ok && b == nil {
		return i, true
	}
	return 0, false
}

func floatInt(x float64) (int64, bool) {
	if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
		return int64(x), true
	}
	return 0, false
}

// StrList returns key as a list of strings: a list of str or bytes (other
// elements are skipped) or a comma-separated string. Missing keys give nil.
func (c Caps) StrList(key string) []string {
	v, ok := c.Get(key)
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case string:
		return splitList(x)
	case []byte:
		return splitList(string(x))
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := keyString(e); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return x
	}
	return nil
}

func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	parts := strings.Split(s, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
