#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite (unit + end-to-end against the compiled
# binary). Extra arguments go to `bun test`. The last line is `N passed, N failed, N skipped`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --services || { echo "0 passed, 1 failed"; exit 1; }
bun scripts/build.ts --single || { echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
bun test --timeout 60000 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
n() { tail -n 15 "$log" | grep -E "^ *[0-9]+ $1\$" | tail -1 | tr -dc 0-9; }
p=$(n pass); f=$(n fail); s=$(n skip); t=$(n todo)
p=${p:-0}; f=${f:-0}; s=$(( ${s:-0} + ${t:-0} ))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crash, or no tests found
rm -f "$log"
echo "$p passed, $f failed, $s skipped"
exit "$rc"
