#!/usr/bin/env bash
# What the console's browser test needs (crates/mt-paas-market/tests/browser.rs): Debian's
# chromium, Node.js with npm, and playwright-core installed from the lock file (no browser
# download: the test drives /usr/bin/chromium). A second run takes a second. Run by
# .ci/services.sh. fonts-nanum is only for screenshots with readable Hangul.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ "$(fc-list 2>/dev/null | grep -ci nanum || true)" -gt 0 ] || missing+=(fonts-nanum)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
tests=crates/mt-paas-market/tests/browser
if [ ! -d "$tests/node_modules/playwright-core" ]; then
  # No browser download: playwright-core has none, and the test names /usr/bin/chromium.
  (cd "$tests" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
fi
echo "browser: $(/usr/bin/chromium --version 2>/dev/null | head -n1), node $(node --version)"
