#!/usr/bin/env bash
# Install and run TimescaleDB (PostgreSQL 17 + timescaledb, Apache edition) on the project's own port.
#
#   deploy/native/timescaledb.sh install   idempotent; leaves any PostgreSQL on 5432 alone
#   deploy/native/timescaledb.sh start|stop|status|dsn
#
# Debian 13 hosts get the packages directly. Debian 12 has no TimescaleDB package, so the same
# Debian 13 packages are installed into a minimal Debian 13 root (debootstrap --variant=minbase),
# from the mirror the host already uses, and the cluster runs from there on YANGYI_DB_PORT.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

CLUSTER=yangyi

in_root() {  # run a command where PostgreSQL 17 lives (the host or the Debian 13 root)
  if [ "$(host_codename)" = trixie ]; then "$@"; else chroot "$YANGYI_TRIXIE_ROOT" "$@"; fi
}

mount_root_fs() {
  [ "$(host_codename)" = trixie ] && return 0
  mountpoint -q "$YANGYI_TRIXIE_ROOT/proc" || mount -t proc proc "$YANGYI_TRIXIE_ROOT/proc"
  mountpoint -q "$YANGYI_TRIXIE_ROOT/dev" || mount --bind /dev "$YANGYI_TRIXIE_ROOT/dev"
}

make_trixie_root() {
  local mirror
  mirror=$(host_debian_mirror)
  if [ -f "$YANGYI_TRIXIE_ROOT/.yangyi-root-ready" ]; then return 0; fi
  apt_install debootstrap debian-archive-keyring
  log "debootstrap --variant=minbase trixie $YANGYI_TRIXIE_ROOT (mirror from host sources)"
  rm -rf "$YANGYI_TRIXIE_ROOT"
  mkdir -p "$YANGYI_TRIXIE_ROOT"
  debootstrap --variant=minbase trixie "$YANGYI_TRIXIE_ROOT" "$mirror" >"$YANGYI_STATE_DIR/debootstrap.log" 2>&1 || {
    log "debootstrap failed; see $YANGYI_STATE_DIR/debootstrap.log"; tail -20 "$YANGYI_STATE_DIR/debootstrap.log" >&2; exit 1; }
  # Services must not start inside the root on package install; we start the cluster ourselves.
  printf '#!/bin/sh\nexit 101\n' > "$YANGYI_TRIXIE_ROOT/usr/sbin/policy-rc.d"
  chmod +x "$YANGYI_TRIXIE_ROOT/usr/sbin/policy-rc.d"
  touch "$YANGYI_TRIXIE_ROOT/.yangyi-root-ready"
}

install_packages() {
  local pkgs="postgresql-$YANGYI_PG_MAJOR postgresql-$YANGYI_PG_MAJOR-timescaledb"
  if [ "$(host_codename)" = trixie ]; then
    apt_install $pkgs
    return
  fi
  make_trixie_root
  mount_root_fs
  if ! chroot "$YANGYI_TRIXIE_ROOT" dpkg-query -W -f='${Status}' "postgresql-$YANGYI_PG_MAJOR-timescaledb" 2>/dev/null | grep -q "install ok installed"; then
    log "installing $pkgs inside the Debian 13 root"
    chroot "$YANGYI_TRIXIE_ROOT" apt-get update -qq
    chroot "$YANGYI_TRIXIE_ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
}

create_cluster() {
  if in_root test -d "/etc/postgresql/$YANGYI_PG_MAJOR/$CLUSTER"; then return 0; fi
  # The packages create a default cluster "main" on 5432; it is never started, so drop it.
  in_root pg_dropcluster "$YANGYI_PG_MAJOR" main 2>/dev/null || true
  log "creating cluster $YANGYI_PG_MAJOR/$CLUSTER on port $YANGYI_DB_PORT"
  in_root pg_createcluster "$YANGYI_PG_MAJOR" "$CLUSTER" -p "$YANGYI_DB_PORT" >/dev/null
  local conf="/etc/postgresql/$YANGYI_PG_MAJOR/$CLUSTER/conf.d/yangyi.conf"
  in_root sh -c "cat > $conf" <<CONF
# Yangyi: TimescaleDB on the project's own port, loopback only by default.
listen_addresses = '127.0.0.1'
port = $YANGYI_DB_PORT
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = 512MB
dynamic_shared_memory_type = mmap
synchronous_commit = on
CONF
}

start() {
  mount_root_fs
  if port_listening "$YANGYI_DB_PORT" &&
     in_root pg_lsclusters -h | awk -v c="$CLUSTER" '$2==c && $4=="online"' | grep -q .; then return 0; fi
  # A postmaster.pid left by a reboot or an earlier container may name a live process that is not
  # PostgreSQL; both pg_lsclusters and the postmaster would then refuse to start. Drop it.
  local data pidfile
  data=$(in_root pg_lsclusters -h | awk -v c="$CLUSTER" '$2==c {print $6}')
  pidfile=${data:+$data/postmaster.pid}
  if [ -n "$pidfile" ]; then
    [ "$(host_codename)" = trixie ] || pidfile=$YANGYI_TRIXIE_ROOT$pidfile
    if [ -f "$pidfile" ] && ! pidfile_alive "$pidfile" postgres; then
      log "removing stale $pidfile"
      rm -f "$pidfile"
    fi
  fi
  log "starting PostgreSQL $YANGYI_PG_MAJOR/$CLUSTER on 127.0.0.1:$YANGYI_DB_PORT"
  ( close_extra_fds; in_root pg_ctlcluster --skip-systemctl-redirect "$YANGYI_PG_MAJOR" "$CLUSTER" start )
  for _ in $(seq 100); do port_listening "$YANGYI_DB_PORT" && return 0; sleep 0.1; done
  log "PostgreSQL did not start listening on $YANGYI_DB_PORT"; exit 1
}

stop() {
  in_root pg_ctlcluster --skip-systemctl-redirect "$YANGYI_PG_MAJOR" "$CLUSTER" stop 2>/dev/null || true
}

psql_su() { in_root su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $YANGYI_DB_PORT $*"; }

create_db() {
  local pw
  pw=$(ensure_secret "$YANGYI_DB_PASSWORD_FILE")
  psql_su "-d postgres" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$YANGYI_DB_USER') THEN
    CREATE ROLE $YANGYI_DB_USER LOGIN CREATEDB PASSWORD '$pw';
  ELSE
    ALTER ROLE $YANGYI_DB_USER LOGIN CREATEDB PASSWORD '$pw';
  END IF;
END \$\$;
SQL
  # The extension is not "trusted": put it in template1 so databases the app creates (tests) have it.
  psql_su "-d template1 -c 'CREATE EXTENSION IF NOT EXISTS timescaledb'"
  if ! psql_su "-d postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='$YANGYI_DB_NAME'\"" | grep -q 1; then
    psql_su "-d postgres -c 'CREATE DATABASE $YANGYI_DB_NAME OWNER $YANGYI_DB_USER'"
  fi
  psql_su "-d $YANGYI_DB_NAME -c 'CREATE EXTENSION IF NOT EXISTS timescaledb'"
}

dsn() {
  printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$YANGYI_DB_USER" "$(ensure_secret "$YANGYI_DB_PASSWORD_FILE")" "$YANGYI_DB_PORT" "$YANGYI_DB_NAME"
}

case "${1:-install}" in
  install) need_root; mkdir -p "$YANGYI_STATE_DIR"; install_packages; create_cluster; start; create_db
           log "TimescaleDB ready on 127.0.0.1:$YANGYI_DB_PORT (database $YANGYI_DB_NAME)";;
  start) need_root; start;;
  stop) need_root; stop;;
  status) in_root pg_lsclusters;;
  dsn) dsn;;
  *) echo "usage: $0 install|start|stop|status|dsn" >&2; exit 2;;
esac
