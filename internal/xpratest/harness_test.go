package xpratest

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// xwdImage builds a 2x1 ZPixmap XWD (32 bpp, LSBFirst, 8:8:8 masks) with a
// red and a blue pixel: the layout Xvfb -fbdir writes.
func xwdImage() []byte {
	const header = 100 + 4 // 25 fields + a 4-byte window name
	h := []uint32{header, 7, 2, 24, 2, 1, 0, 0, 32, 0, 32, 32, 8, 4,
		0xff0000, 0x00ff00, 0x0000ff, 8, 256, 1, 2, 1, 0, 0, 0}
	b := make([]byte, header+12+8)
	for i, v := range h {
		binary.BigEndian.PutUint32(b[i*4:], v)
	}
	copy(b[100:], "xvf\x00")
	// one XWDColor entry (ignored for true colour), then the pixels
	binary.LittleEndian.PutUint32(b[header+12:], 0x00ff0000)
	binary.LittleEndian.PutUint32(b[header+16:], 0x000000ff)
	return b
}

func TestDecodeXWD(t *testing.T) {
	img, err := decodeXWD(xwdImage())
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 2 || img.Bounds().Dy() != 1 {
		t.Fatalf("bounds %v", img.Bounds())
	}
	if c := img.RGBAAt(0, 0); c.R != 255 || c.G != 0 || c.B != 0 || c.A != 255 {
		t.Errorf("pixel 0 = %v, want red", c)
	}
	if c := img.RGBAAt(1, 0); c.R != 0 || c.G != 0 || c.B != 255 {
		t.Errorf("pixel 1 = %v, want blue", c)
	}
	if n := DistinctColors(img, img.Bounds(), 1, 10); n != 2 {
		t.Errorf("DistinctColors = %d, want 2", n)
	}

	bad := map[string]func([]byte) []byte{
		"short":       func(b []byte) []byte { return b[:50] },
		"truncated":   func(b []byte) []byte { return b[:len(b)-1] },
		"version":     func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 6); return b },
		"xybitmap":    func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 0); return b },
		"16bpp":       func(b []byte) []byte { binary.BigEndian.PutUint32(b[44:], 16); return b },
		"huge header": func(b []byte) []byte { binary.BigEndian.PutUint32(b[0:], 0xffffffff); return b },
		"zero width":  func(b []byte) []byte { binary.BigEndian.PutUint32(b[16:], 0); return b },
		"short lines": func(b []byte) []byte { binary.BigEndian.PutUint32(b[48:], 4); return b },
	}
	for name, mutate := range bad {
		if _, err := decodeXWD(mutate(xwdImage())); !errors.Is(err, ErrBadXWD) {
			t.Errorf("%s: err = %v, want ErrBadXWD", name, err)
		}
	}
}

func FuzzDecodeXWD(f *testing.F) {
	f.Add(xwdImage())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := decodeXWD(b)
		if err == nil && img == nil {
			t.Fatal("nil image without error")
		}
	})
}

// TestRunBounded: Run kills a command (and its children) that outlives its
// bound and reports -1; a normal exit code comes through.
func TestRunBounded(t *testing.T) {
	began := time.Now()
	out, code := runCmd(t, 500*time.Millisecond, "/bin/sh", "-c", "sleep 30 & echo started; sleep 30")
	if code != -1 || !strings.Contains(out, "started") {
		t.Errorf("runCmd = %q, %d; want output and -1", out, code)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("runCmd took %s", d)
	}
	if _, code := runCmd(t, 5*time.Second, "/bin/sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	if left := LeftoverProcesses(); len(left) != 0 {
		// other parallel tests may own these; only our sleeps matter, and
		// they carry Run's markers, so any leftover here is a failure of
		// this test or of a finished one
		for _, pid := range left {
			if cmd := cmdline(pid); strings.Contains(cmd, "sleep") {
				t.Errorf("left running: %d %s", pid, cmd)
			}
		}
	}
}

func TestFreeDisplayUnique(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		n := FreeDisplay(t)
		if seen[n] {
			t.Fatalf("display %d handed out twice", n)
		}
		seen[n] = true
	}
}
