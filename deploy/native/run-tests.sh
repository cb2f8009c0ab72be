#!/usr/bin/env bash
# Run the whole suite; fail loudly if no test ran (pytest exits 5 when it collects nothing).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
VENV=${YANGYI_VENV:-$root/.venv}
# The suite gets the scratch broker (common.sh), emptied each run: test traffic and test accounts never
# reach the broker that `make run` (or production) uses, and no persistent session there queues them.
if [ "${YANGYI_MQTT_DIR:-}" != "$(. "$root/deploy/native/common.sh"; echo "$YANGYI_SCRATCH_MQTT_DIR")" ]; then
  exec bash "$root/deploy/native/with-scratch-broker.sh" --fresh bash "$0" "$@"
fi
"$VENV/bin/ruff" check edge server firmware_bridge tests bench || exit 1
"$VENV/bin/mypy" || exit 1
"$VENV/bin/pytest" "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "run-tests: pytest collected no tests — failing" >&2
  exit 1
fi
exit $rc
