#!/usr/bin/env bash
# Debian's Chromium and its WebDriver for the HTML report's browser test
# (tests/trials/test_report_browser.py; a browser download at install time fails on these
# machines). Idempotent: installs only what is missing; without root it says what to install.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    chromium --version; chromedriver --version
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "browser-setup: chromium or chromedriver missing and not root; install them (Debian: apt-get install chromium chromium-driver)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium chromium-driver
chromium --version; chromedriver --version
