package xprawire

import "strings"

// KV is one entry of an ordered dict. Key is usually string or []byte but may
// be any decoded value (xpra bencode and rencode allow int keys).
type KV struct{ Key, Value any }

// Dict is an insertion-ordered dict. Duplicate keys are not merged on decode;
// Get returns the first match.
type Dict []KV

// keyIs reports whether k is the string key or a []byte with the same content.
func keyIs(k any, key string) bool {
	switch k := k.(type) {
	case string:
		return k == key
	case []byte:
		return string(k) == key
	}
	return false
}

func keyString(k any) (string, bool) {
	switch k := k.(type) {
	case string:
		return k, true
	case []byte:
		return string(k), true
	}
	return "", false
}

// Get returns the value of the first entry whose key is key, as a string or []byte.
func (d Dict) Get(key string) (any, bool) {
	for i := range d {
		if keyIs(d[i].Key, key) {
			return d[i].Value, true
		}
	}
	return nil, false
}

// Set replaces the value of the first entry matching key in place, or appends
// a new entry with a string key.
func (d *Dict) Set(key string, v any) {
	for i := range *d {
		if keyIs((*d)[i].Key, key) {
			(*d)[i].Value = v
			return
		}
	}
	*d = append(*d, KV{Key: key, Value: v})
}

// Delete removes every entry whose key is key (string or []byte).
func (d *Dict) Delete(key string) {
	d.filter(func(k string) bool { return k == key })
}

// DeletePrefix removes every entry whose string or []byte key starts with prefix.
func (d *Dict) DeletePrefix(prefix string) {
	d.filter(func(k string) bool { return strings.HasPrefix(k, prefix) })
}

func (d *Dict) filter(drop func(string) bool) {
	out := (*d)[:0]
	for _, kv := range *d {
		if k, ok := keyString(kv.Key); ok && drop(k) {
			continue
		}
		out = append(out, kv)
	}
	clear((*d)[len(out):])
	*d = out
}

// Packet is one xpra packet: element 0 is the packet type.
type Packet []any

// Type returns element 0 as a string when it is a string or []byte, "" otherwise
// (empty packet or an integer alias).
func (p Packet) Type() string {
	if len(p) == 0 {
		return ""
	}
	s, _ := keyString(p[0])
	return s
}
