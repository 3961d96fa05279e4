package xprawire

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// tag renders a decoded or expected value exactly, in the format the python
// peer (scripts/xprawire-diff.py) produces and parses.
func tag(v any) string {
	var sb strings.Builder
	writeTag(&sb, v)
	return sb.String()
}

func writeTag(sb *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		sb.WriteString("N")
	case bool:
		if x {
			sb.WriteString("T")
		} else {
			sb.WriteString("F")
		}
	case float64:
		fmt.Fprintf(sb, "f%016x", math.Float64bits(x))
	case float32:
		fmt.Fprintf(sb, "f%016x", math.Float64bits(float64(x)))
	case []byte:
		sb.WriteString("b" + hex.EncodeToString(x) + ";")
	case string:
		sb.WriteString("s" + hex.EncodeToString([]byte(x)) + ";")
	case []any:
		sb.WriteString("[")
		for _, e := range x {
			writeTag(sb, e)
		}
		sb.WriteString("]")
	case Dict:
		sb.WriteString("{")
		for _, kv := range x {
			writeTag(sb, kv.Key)
			writeTag(sb, kv.Value)
		}
		sb.WriteString("}")
	default:
		if i, b, ok := intValue(v); ok {
			if b != nil {
				sb.WriteString("i" + b.String() + ";")
			} else {
				sb.WriteString("i" + strconv.FormatInt(i, 10) + ";")
			}
			return
		}
		fmt.Fprintf(sb, "?%T", v)
	}
}

// canon returns the value the decoder of e must produce for v.
func canon(e Encoding, v any) any {
	switch x := v.(type) {
	case bool:
		if e == Bencode {
			return int64(btoi(x))
		}
		return x
	case string:
		if e == RencodePlus {
			return x
		}
		return []byte(x)
	case []byte:
		return x
	case float64:
		if e == Rencode {
			return float32(x)
		}
		return x
	case float32:
		if e == RencodePlus {
			return float64(x)
		}
		return x
	case nil:
		return nil
	case []any:
		out := make([]any, len(x))
		for i, e2 := range x {
			out[i] = canon(e, e2)
		}
		return out
	case Dict:
		out := make(Dict, len(x))
		for i, kv := range x {
			out[i] = KV{canon(e, kv.Key), canon(e, kv.Value)}
		}
		return out
	}
	if i, b, ok := intValue(v); ok {
		if b != nil {
			return b
		}
		return i
	}
	panic(fmt.Sprintf("canon: unexpected %T", v))
}

// gen makes random values that e can carry, and python can rebuild from a tag.
type gen struct {
	r *rand.Rand
	e Encoding
}

func newGen(seed uint64, e Encoding) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, uint64(e))), e: e}
}

var genRunes = []rune("aZ09 -_.:/é€😀\u0000\u007f")

func (g *gen) str() string {
	n := g.r.IntN(12)
	switch g.r.IntN(10) {
	case 0:
		n = 60 + g.r.IntN(10) // around the fixed/":" boundary
	case 1:
		n = 100 + g.r.IntN(200)
	}
	var sb strings.Builder
	for sb.Len() < n {
		sb.WriteRune(genRunes[g.r.IntN(len(genRunes))])
	}
	return sb.String()
}

func (g *gen) bytes() []byte {
	n := g.r.IntN(12)
	switch g.r.IntN(10) {
	case 0:
		n = 60 + g.r.IntN(10)
	case 1:
		n = 100 + g.r.IntN(200)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.UintN(256))
	}
	return b
}

func (g *gen) int() any {
	switch g.r.IntN(9) {
	case 0:
		return int64(g.r.IntN(44))
	case 1:
		return -int64(g.r.IntN(33))
	case 2:
		return int64(g.r.IntN(256) - 128)
	case 3:
		return int64(g.r.IntN(65536) - 32768)
	case 4:
		return int64(g.r.Int32()) * int64(1-2*g.r.IntN(2))
	case 5:
		return g.r.Int64() * int64(1-2*g.r.IntN(2))
	case 6:
		edges := []int64{43, 44, -32, -33, 127, 128, -128, -129, 32767, 32768, -32768, -32769,
			math.MaxInt32, math.MaxInt32 + 1, math.MinInt32, math.MinInt32 - 1, math.MaxInt64, math.MinInt64}
		return edges[g.r.IntN(len(edges))]
	case 7:
		return int(g.r.IntN(1000))
	default: // beyond int64, up to 63 characters for rencode
		digits := 19 + g.r.IntN(43)
		var sb strings.Builder
		if g.r.IntN(2) == 0 {
			sb.WriteByte('-')
			digits--
		}
		sb.WriteByte(byte('1' + g.r.IntN(9)))
		for range digits - 1 {
			sb.WriteByte(byte('0' + g.r.IntN(10)))
		}
		b, _ := new(big.Int).SetString(sb.String(), 10)
		if b.IsInt64() {
			return b.Int64()
		}
		return b
	}
}

func (g *gen) float() any {
	f := float64(float32(g.r.NormFloat64() * 1000))
	if g.e == RencodePlus {
		f = g.r.NormFloat64() * math.Pow(10, float64(g.r.IntN(20)-10))
	}
	if g.r.IntN(5) == 0 {
		return float32(f)
	}
	return f
}

func (g *gen) scalar() any {
	for {
		switch g.r.IntN(7) {
		case 0, 1:
			return g.int()
		case 2:
			return g.str()
		case 3:
			return g.bytes()
		case 4:
			return g.r.IntN(2) == 0
		case 5:
			if g.e != Bencode {
				return nil
			}
		case 6:
			if g.e != Bencode {
				return g.float()
			}
		}
	}
}

func (g *gen) key() any {
	switch g.r.IntN(4) {
	case 0:
		return g.int()
	case 1:
		return g.bytes()
	}
	return g.str()
}

func (g *gen) value(depth int) any {
	if depth >= 4 || g.r.IntN(3) > 0 {
		return g.scalar()
	}
	n := g.r.IntN(6)
	if g.r.IntN(8) == 0 {
		n = 20 + g.r.IntN(60) // past the fixed-size forms (24 pairs, 63 items)
	}
	if g.r.IntN(2) == 0 {
		l := make([]any, n)
		for i := range l {
			l[i] = g.value(depth + 1)
		}
		return l
	}
	d := Dict{}
	seen := map[string]bool{}
	for len(d) < n {
		k := g.key()
		t := tag(canon(g.e, k))
		if g.e == RencodePlus {
			t = tag(k)
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		d = append(d, KV{k, g.value(depth + 1)})
	}
	return d
}

func TestGoRoundTripRandom(t *testing.T) {
	for _, e := range []Encoding{Bencode, Rencode, RencodePlus} {
		t.Run(e.String(), func(t *testing.T) {
			g := newGen(1, e)
			for i := range 3000 {
				v := g.value(0)
				b, err := Marshal(e, v)
				if err != nil {
					t.Fatalf("value %d: marshal %s: %v", i, tag(v), err)
				}
				got, err := Unmarshal(e, b)
				if err != nil {
					t.Fatalf("value %d: unmarshal %x: %v", i, b, err)
				}
				if want := tag(canon(e, v)); tag(got) != want {
					t.Fatalf("value %d: round trip\n got %s\nwant %s", i, tag(got), want)
				}
				// the decoded form encodes to the same bytes (canonical encoding)
				b2, err := Marshal(e, got)
				if err != nil || string(b2) != string(b) {
					t.Fatalf("value %d: re-encoding the decoded value differs: %v\n%x\n%x", i, err, b, b2)
				}
			}
		})
	}
}

func bigPow10(n int64) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil) }

func make64zeros() []byte { return []byte(strings.Repeat("0", 63)) }
