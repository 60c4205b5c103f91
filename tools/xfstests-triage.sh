#!/usr/bin/env bash
# tools/xfstests-triage.sh - sort the failures of the last xfstests run (tools/xfstests.sh)
# into: expected on every FUSE filesystem (tools/xfstests-expected.txt, with the reason),
# failing only because a mount printed walrusfs's "still held ... waiting" notice on stderr
# (the rest of the output is as expected), and the others: walrusfs bugs to look at.
#
# Usage: tools/xfstests-triage.sh [XFSTESTS_DIR]   (default: $XFSTESTS_DIR or ../xfstests)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-${XFSTESTS_DIR:-$(dirname "$REPO")/xfstests}}
EXPECTED=$REPO/tools/xfstests-expected.txt
RESULTS=$DIR/results
NOTICE='is still held by another walrusfs process'

[ -f "$RESULTS/check.log" ] || { echo "no $RESULTS/check.log: run tools/xfstests.sh first" >&2; exit 2; }
failures=$(grep '^Failures:' "$RESULTS/check.log" | tail -1 | sed 's/^Failures: *//')

expected=() notice=() other=()
for t in $failures; do
    reason=$(awk -v t="$t" '$1 == t { $1 = ""; sub(/^ +/, ""); print; exit }' "$EXPECTED" 2>/dev/null)
    if [ -n "$reason" ]; then
        expected+=("$t: $reason")
        continue
    fi
    bad=$RESULTS/$t.out.bad
    if [ -f "$bad" ] && [ ! -s "$RESULTS/$t.dmesg" ] && ! grep -qx "$t killed after.*" "$RESULTS/timeouts.txt" 2>/dev/null &&
        grep -q "$NOTICE" "$bad" && diff -q <(grep -v "$NOTICE" "$bad") "$DIR/tests/$t.out" >/dev/null; then
        notice+=("$t")
        continue
    fi
    other+=("$t")
done

echo "failures expected (FUSE-wide or environment, tools/xfstests-expected.txt) (${#expected[@]}):"
for e in "${expected[@]}"; do echo "  $e"; done
echo "failures only from the mount's 'still held' notice on stderr (${#notice[@]}): ${notice[*]}"
echo "other failures, walrusfs to look at (${#other[@]}): ${other[*]}"
