#!/usr/bin/env bash
# Run a command and record it beside its outputs: OUT_DIR/COMMAND.md gets the command, the git
# commit it ran from, the machine, and the measured wall time.
#   bash experiments/record.sh results/quick ".venv/bin/python experiments/train.py ..."
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OUT_DIR 'COMMAND'" >&2; exit 2; }
out=$1 command=$2
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# "(dirty)": the code of this checkout (degradation.launch.CODE_PATHS) had changes against that
# commit; "(code state unknown)" when it cannot be told
dirty=$(PYTHONPATH=src .venv/bin/python -c "from pathlib import Path
from degradation.launch import git_state
print(git_state(Path('.')).get('dirty'))" 2>/dev/null || echo None)
case $dirty in True) commit="$commit (dirty)" ;; False) ;; *) commit="$commit (code state unknown)" ;; esac
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s)
bash -c "$command"
wall=$(( $(date +%s) - t0 ))
cpu=$(grep -m1 "model name" /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || echo unknown)
versions=$(.venv/bin/python - <<'PY'
import platform

import hydra
import pytorch_lightning
import torch
import torchvision

print(f"python {platform.python_version()}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, pytorch-lightning {pytorch_lightning.__version__}, "
      f"hydra {hydra.__version__} (installed with constraints.txt)")
PY
)
mkdir -p "$out"
cat > "$out/COMMAND.md" <<MD
# How this folder was made

\`\`\`bash
$command
\`\`\`

- commit: $commit
- started: $started
- wall time: ${wall} s ($(( wall / 60 )) min $(( wall % 60 )) s), the command above from start to end
- machine: $(nproc) CPU cores ($cpu), $(free -g | awk '/^Mem:/ {print $2}') GiB memory, no GPU used
- versions: $versions
MD
echo "recorded: $out/COMMAND.md" >&2
