#!/usr/bin/env bash
# Debian's Chromium for the browser test (tests/test_web.py). Never fatal: where it cannot be
# installed, that test is skipped and says why.
set -u
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    echo "install-browser: not root or no apt-get: the browser test will be skipped"
    exit 0
fi
echo "install-browser: apt-get install chromium (for the browser test)"
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "install-browser: could not install chromium: the browser test will be skipped"
exit 0
