#!/usr/bin/env bash
# Start (or stop) the whole system on this machine: API server, ingest worker, maintenance loop and a
# simulated county of meal points. The broker and database are started by `make services`.
#
#   deploy/native/run.sh start|stop|status
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
root=$(cd "$here/../.." && pwd)
VENV=${YANGYI_VENV:-$root/.venv}
RUN_DIR=$YANGYI_STATE_DIR/run
HTTP_HOST=${YANGYI_HTTP_HOST:-127.0.0.1}
HTTP_PORT=${YANGYI_HTTP_PORT:-8080}
SIM_POINTS=${YANGYI_SIM_POINTS:-20}

export YANGYI_DB_DSN=${YANGYI_DB_DSN:-$(bash "$here/timescaledb.sh" dsn)}
export YANGYI_MQTT_HOST=${YANGYI_MQTT_HOST:-127.0.0.1}
export YANGYI_MQTT_PORT=$YANGYI_MQTT_PORT
export YANGYI_MQTT_PASSWORD_FILE=${YANGYI_MQTT_PASSWORD_FILE:-$YANGYI_STATE_DIR/secrets/mqtt_server_password}

PROGRAMS=(ingest maintenance server county)

cmd_for() {
  case $1 in
    ingest) echo "$VENV/bin/yangyi-ingest";;
    maintenance) echo "$VENV/bin/yangyi-maintenance --every 3600";;
    server) echo "$VENV/bin/yangyi-server --host $HTTP_HOST --port $HTTP_PORT";;
    county) echo "$VENV/bin/yangyi-sim-county --points $SIM_POINTS --port $YANGYI_MQTT_PORT --all-day --rate-per-min 2 --telemetry-interval-s 15";;
  esac
}

running() { pidfile_alive "$RUN_DIR/$1.pid" "yangyi-"; }

start_one() {
  local name=$1
  if running "$name"; then log "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return; fi
  # shellcheck disable=SC2046
  ( close_extra_fds; exec setsid nohup $(cmd_for "$name") >>"$RUN_DIR/$name.log" 2>&1 < /dev/null ) &
  echo $! > "$RUN_DIR/$name.pid"
  log "started $name (pid $!, log $RUN_DIR/$name.log)"
}

stop_one() {
  local name=$1
  if running "$name"; then
    local pid
    pid=$(cat "$RUN_DIR/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "stopped $name"
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# The first bureau administrator: created once, password kept in the secrets directory.
ensure_admin() {
  local pwfile=$YANGYI_STATE_DIR/secrets/admin_password
  if [ -s "$pwfile" ]; then return 0; fi
  local pw
  pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  if printf '%s\n' "$pw" | "$VENV/bin/yangyi-auth" create-user --username admin --display-name 县民政局管理员 \
      --role bureau_admin --password-stdin >/dev/null; then
    (umask 077; printf '%s\n' "$pw" > "$pwfile")
    log "created the bureau administrator 'admin' (password in $pwfile)"
  else
    log "could not create the administrator (it may exist already); reset with: yangyi-auth set-password --username admin"
  fi
}

case "${1:-start}" in
  start)
    mkdir -p "$RUN_DIR"
    ensure_admin
    for p in "${PROGRAMS[@]}"; do start_one "$p"; done
    url="http://$HTTP_HOST:$HTTP_PORT/"
    for _ in $(seq 100); do
      curl -fsS "${url}health" >/dev/null 2>&1 && break
      sleep 0.3
    done
    if ! curl -fsS "${url}health" >/dev/null 2>&1; then
      log "the server did not become healthy; see $RUN_DIR/server.log"; tail -20 "$RUN_DIR/server.log" >&2; exit 1
    fi
    echo
    echo "养怡 Yangyi is running with $SIM_POINTS simulated meal points."
    echo "  Dashboard:  $url"
    echo "  Sign in:    admin / $(cat "$YANGYI_STATE_DIR/secrets/admin_password" 2>/dev/null || echo '(see yangyi-auth)')"
    echo "  API:        ${url}openapi.json"
    echo "  Logs:       $RUN_DIR/*.log     Stop: make stop"
    ;;
  stop) for p in county server maintenance ingest; do stop_one "$p"; done;;
  status) for p in "${PROGRAMS[@]}"; do running "$p" && echo "$p: running" || echo "$p: stopped"; done;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2;;
esac
