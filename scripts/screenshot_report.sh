#!/usr/bin/env bash
# Screenshot a whole mmgate HTML page in headless Chromium (Debian's chromium package), to look at it.
#   bash scripts/screenshot_report.sh results/report/ckpt=good/report.html report.png [width]
# The page's full height is measured first (a copy of the page reports its scrollHeight), so
# nothing below the first screen is cut off.
set -euo pipefail
html=$(realpath "$1")
out=$(realpath -m "${2:-report.png}")
width=${3:-1200}
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install -y chromium" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$work/profile" --hide-scrollbars)
# a sibling copy, so relative links still resolve; it writes its height into the DOM Chromium dumps
probe="$(dirname "$html")/.screenshot-probe-$$.html"
trap 'rm -rf "$work" "$probe"' EXIT
{ cat "$html"; echo '<script>document.body.setAttribute("data-height", document.documentElement.scrollHeight)</script>'; } > "$probe"
height=$(chromium "${flags[@]}" --window-size="$width",1000 --virtual-time-budget=10000 --dump-dom "file://$probe" 2>/dev/null |
         grep -o 'data-height="[0-9]*"' | grep -o '[0-9]*' || true)
[ -n "$height" ] || { echo "could not measure the page height of $html" >&2; exit 1; }
chromium "${flags[@]}" --window-size="$width","$height" --virtual-time-budget=10000 --screenshot="$out" "file://$html" 2>/dev/null
echo "wrote $out (${width}x${height})"
