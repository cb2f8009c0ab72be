#!/usr/bin/env bash
# Install what the project needs on a fresh Debian 12 or 13 machine (as root): system packages,
# the Python virtual environment with the project and its extras. Idempotent.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
need_root
root=$(cd "$here/../.." && pwd)
VENV=${YANGYI_VENV:-$root/.venv}
PYTHON=${PYTHON:-python3}

apt_install ca-certificates curl python3 python3-venv python3-dev gcc make mosquitto mosquitto-clients sqlite3 procps
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  log "Python 3.11 or newer is required ($PYTHON is $("$PYTHON" --version 2>&1))"; exit 1
fi
stamp=$VENV/.yangyi-installed
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  log "installing the project into $VENV (editable, with edge, server and dev extras)"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$root[dev]"
  touch "$stamp"
fi
