#!/usr/bin/env bash
# Screenshot an mmgate HTML report in headless Chromium (Debian's chromium package), to look at it.
#   bash scripts/screenshot_report.sh results/report/ckpt=good/report.html report.png [height]
set -euo pipefail
html=$(realpath "$1")
out=${2:-report.png}
height=${3:-4000}
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install -y chromium" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1200,"$height" --screenshot="$(realpath -m "$out")" "file://$html" 2>/dev/null
echo "wrote $out"
