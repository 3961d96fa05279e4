package auth

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadUIDMin(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]int{
		"# comment\nUID_MIN\t\t 2000\nUID_MAX 60000\n": 2000,
		"UID_MAX 60000\n": DefaultUIDMin,
		"UID_MIN nope\n":  DefaultUIDMin,
		"UID_MIN -5\n":    DefaultUIDMin,
	} {
		p := filepath.Join(dir, "login.defs")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := readUIDMin(p); got != want {
			t.Errorf("%q: UID_MIN %d, want %d", content, got, want)
		}
	}
	if got := readUIDMin(filepath.Join(dir, "missing")); got != DefaultUIDMin {
		t.Errorf("missing file: %d", got)
	}
}
