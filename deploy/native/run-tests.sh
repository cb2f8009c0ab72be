#!/usr/bin/env bash
# Run the whole suite; fail loudly if no test ran (pytest exits 5 when it collects nothing).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
VENV=${YANGYI_VENV:-$root/.venv}
# The suite gets a broker of its own, started empty each run on its own port: test traffic and test
# accounts never reach the broker that `make run` (or production) uses, and no persistent session
# there queues them. Same configuration, same server account, from the same script.
. "$root/deploy/native/common.sh"
set +e
export YANGYI_MQTT_PORT=${YANGYI_TEST_MQTT_PORT:-18831}
export YANGYI_MQTT_DIR=${YANGYI_TEST_MQTT_DIR:-$YANGYI_STATE_DIR/mosquitto-test}
bash "$root/deploy/native/mosquitto.sh" stop || exit 1
rm -rf "$YANGYI_MQTT_DIR"
bash "$root/deploy/native/mosquitto.sh" install || exit 1
"$VENV/bin/ruff" check edge server firmware_bridge tests bench || exit 1
"$VENV/bin/mypy" || exit 1
"$VENV/bin/pytest" "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "run-tests: pytest collected no tests — failing" >&2
  exit 1
fi
exit $rc
