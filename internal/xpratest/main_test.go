package xpratest

import (
	"fmt"
	"os"
	"testing"
)

// TestMain proves that nothing the harness started outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if left := LeftoverProcesses(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "xpratest: processes left running after the tests: %v\n", left)
		for _, pid := range left {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
				fmt.Fprintf(os.Stderr, "  %d: %q\n", pid, b)
			}
		}
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
