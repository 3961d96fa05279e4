#!/usr/bin/env bash
# Runs each fuzz target of the module for FUZZTIME (default 3s), one at a time.
# A failure prints the fuzzer's own output. When the fuzzer found an input (a new
# file under testdata/fuzz, which go test writes for every failing input) the
# run fails; when it failed without one (the fuzzing engine itself, e.g. a worker
# lost on a loaded machine) the target is run once more before failing.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-3s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# count DIR: the files in DIR (0 when it does not exist).
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
for pkg in $($GO list ./...); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for t in $($GO test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "fuzz $pkg $t ($FUZZTIME)"
		for attempt in 1 2; do
			before=$(count "$dir/testdata/fuzz/$t")
			if $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg" >"$out" 2>&1; then
				break
			fi
			after=$(count "$dir/testdata/fuzz/$t")
			echo "FAIL fuzz $t (attempt $attempt)"
			tail -40 "$out"
			if [ "$after" -gt "$before" ] || [ "$attempt" -eq 2 ]; then
				[ "$after" -gt "$before" ] && echo "the failing input is in $dir/testdata/fuzz/$t (commit it with the fix)"
				exit 1
			fi
			echo "no failing input was written: the fuzzing engine failed; running $t once more"
		done
	done
done
