# Shared settings for the native (no Docker) deployment scripts; sourced, not run.
# Every value can be overridden from the environment.
set -euo pipefail

YANGYI_STATE_DIR=${YANGYI_STATE_DIR:-/var/lib/yangyi}
YANGYI_DB_PORT=${YANGYI_DB_PORT:-54329}
YANGYI_DB_NAME=${YANGYI_DB_NAME:-yangyi}
YANGYI_DB_USER=${YANGYI_DB_USER:-yangyi}
YANGYI_DB_PASSWORD_FILE=${YANGYI_DB_PASSWORD_FILE:-$YANGYI_STATE_DIR/secrets/db_password}
YANGYI_MQTT_PORT=${YANGYI_MQTT_PORT:-18830}
YANGYI_PG_MAJOR=${YANGYI_PG_MAJOR:-17}
YANGYI_TRIXIE_ROOT=${YANGYI_TRIXIE_ROOT:-$YANGYI_STATE_DIR/trixie-root}
# The scratch broker: the test suite's and the publishing benchmarks' (same script and configuration as the
# real one), so their traffic never queues in the persistent sessions of make run's or production's broker.
YANGYI_SCRATCH_MQTT_PORT=${YANGYI_SCRATCH_MQTT_PORT:-18831}
YANGYI_SCRATCH_MQTT_DIR=${YANGYI_SCRATCH_MQTT_DIR:-$YANGYI_STATE_DIR/mosquitto-test}

log() { printf '[yangyi-deploy] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (installs packages and services)"
    exit 1
  fi
}

# Print the Debian mirror the host already uses (deb822 or one-line sources).
host_debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    log "cannot find a Debian mirror in /etc/apt/sources*; set YANGYI_DEBIAN_MIRROR"
    exit 1
  fi
  printf '%s\n' "${YANGYI_DEBIAN_MIRROR:-$uri}"
}

host_codename() {
  . /etc/os-release
  printf '%s\n' "${VERSION_CODENAME:-unknown}"
}

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    if [ ! -f "$YANGYI_STATE_DIR/.apt-updated" ] || [ -n "$(find "$YANGYI_STATE_DIR/.apt-updated" -mmin +1440 2>/dev/null)" ]; then
      apt-get update -qq
      mkdir -p "$YANGYI_STATE_DIR" && touch "$YANGYI_STATE_DIR/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_secret() {  # ensure_secret FILE: create a random secret once, print it
  local f=$1
  mkdir -p "$(dirname "$f")"
  chmod 700 "$(dirname "$f")"
  if [ ! -s "$f" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$f")
  fi
  cat "$f"
}

# pidfile_alive PIDFILE WORD: true when PIDFILE names a live process whose command line contains WORD.
# A pidfile outlives its process across a reboot or a fresh container, and the number may by then
# belong to something else; kill -0 alone would call that "running" (and `stop` would kill it).
pidfile_alive() {
  local file=$1 word=$2 pid
  [ -f "$file" ] || return 1
  pid=$(head -n1 "$file" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$word"
}

# port_listening PORT [HOST]: true when something accepts TCP connections there (default 127.0.0.1).
port_listening() {
  local host=${2:-127.0.0.1}
  [ "$host" = 0.0.0.0 ] && host=127.0.0.1
  (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null
}

# close_extra_fds: close every descriptor above 2 in this (sub)shell. Call it in a subshell before
# starting a daemon, so the daemon does not keep the caller's pipes or locks open (a CI log pipe or a
# `flock` held around `make test` would otherwise stay held for as long as the daemon lives).
close_extra_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [[ $fd =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}
