#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through executable_path; `playwright install`
# would download browsers, which fails offline). Without apt or root the browser tests skip, saying why.
set -uo pipefail
if command -v chromium > /dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium chromium-driver > /dev/null 2>&1 \
        || { apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver > /dev/null 2>&1; }
fi
command -v chromium > /dev/null || echo "install-browser: no chromium; the browser tests will be skipped" >&2
exit 0
