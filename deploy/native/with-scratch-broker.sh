#!/usr/bin/env bash
# Run a command against the scratch broker (see common.sh), starting it first if it is not running.
#
#   deploy/native/with-scratch-broker.sh [--fresh] COMMAND [ARGS...]
#
# --fresh stops it and empties its directory first (no sessions, queues or accounts from earlier runs).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
export YANGYI_MQTT_PORT=$YANGYI_SCRATCH_MQTT_PORT YANGYI_MQTT_DIR=$YANGYI_SCRATCH_MQTT_DIR
if [ "${1:-}" = --fresh ]; then
  shift
  bash "$here/mosquitto.sh" stop
  rm -rf "$YANGYI_MQTT_DIR"
fi
[ $# -gt 0 ] || { echo "usage: $0 [--fresh] COMMAND [ARGS...]" >&2; exit 2; }
bash "$here/mosquitto.sh" install
exec "$@"
