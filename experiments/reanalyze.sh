#!/usr/bin/env bash

# ledger (or the folders named), run again the last analyze command its COMMAND.md records and
# append a line saying when, at which commit and in how long. The training runs are not touched.
#   bash experiments/reanalyze.sh                 # every results/*/ with a report.md
#   bash experiments/reanalyze.sh results/quick   # one folder
# tests/test_shipped_results.py fails until the shipped ledgers equal what the code writes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then folders=("$@"); else
  mapfile -t folders < <(ls -d results/*/ | while read -r d; do [ -f "$d/report.md" ] && echo "${d%/}"; done)
fi
commit=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain -- src conf experiments)" ] || commit="$commit (dirty)"
for folder in "${folders[@]}"; do
  args=$(grep -o 'experiments/analyze.py [^`&]*' "$folder/COMMAND.md" | tail -n 1 | sed 's/^experiments\/analyze.py //; s/ *$//')
  [ -n "$args" ] || { echo "$folder: no analyze command in COMMAND.md" >&2; exit 2; }
  t0=$(date +%s)
  # shellcheck disable=SC2086  # the recorded arguments are words
  .venv/bin/python experiments/analyze.py $args > /dev/null
  wall=$(( $(date +%s) - t0 ))
  echo "- re-analysed with \`.venv/bin/python experiments/analyze.py $args\` at commit $commit, $(date -u +%Y-%m-%dT%H:%M:%SZ), ${wall} s" >> "$folder/COMMAND.md"
  echo "re-analysed: $folder (${wall} s)" >&2
done
