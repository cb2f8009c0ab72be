#!/usr/bin/env bash
# Install Debian's Chromium and CJK fonts for the web UI's browser tests (Playwright drives this
# binary; a browser downloaded by a test tool cannot install on offline machines).
#
#   deploy/native/browser.sh install   idempotent
#   deploy/native/browser.sh path      print the browser's path (exit 1 when missing)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

BROWSER=${YANGYI_CHROMIUM:-/usr/bin/chromium}

install() {
  need_root
  # fonts-noto-cjk: the UI is Chinese first; without it screenshots show boxes.
  apt_install chromium fonts-noto-cjk
  "$BROWSER" --version >&2
}

case "${1:-install}" in
  install) install ;;
  path)
    if [ -x "$BROWSER" ]; then printf '%s\n' "$BROWSER"; else log "no browser at $BROWSER; run $0 install"; exit 1; fi ;;
  *) log "usage: $0 install|path"; exit 2 ;;
esac
