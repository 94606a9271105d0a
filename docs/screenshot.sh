#!/bin/sh
# Regenerate docs/report.png: the demo's report (all 90 days) in headless Chromium.
# Needs the virtualenv (`make demo` builds it) and Debian's chromium.
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/etl demo "$work/etl-demo" >/dev/null
.venv/bin/etl -p "$work/etl-demo" report demo_bookings -o "$work/report.html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1400,900 \
  --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "docs/report.png written"
