#!/usr/bin/env bash
# Installs what dffmpeg needs on a fresh Debian machine with Node/npm, idempotently:
# Bun (from npm), Debian's ffmpeg, bubblewrap, openssl and Chromium (dashboard tests), the locked JS dependencies. With --services it also
# installs PostgreSQL, MariaDB, Mosquitto and RabbitMQ when missing (the store and broker tests run on them), starts any of the local
# test services (PostgreSQL, MariaDB, Redis, RabbitMQ, Mosquitto, NATS) that is down, and creates the test role `dffmpeg_test` that may
# create and drop its own databases.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN_VERSION=1.4.5
say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v bun >/dev/null 2>&1 || [ "$(bun --version 2>/dev/null)" != "$BUN_VERSION" ]; then
  say "installing bun $BUN_VERSION from npm"
  npm install -g --silent "bun@$BUN_VERSION" >/dev/null
fi

apt_install() {
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  say "installing Debian packages: $*"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ${APT_LEAN:+--no-install-recommends} "$@" >/dev/null
}
need=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# Workers run every job inside a bubblewrap sandbox (docs/security.md).
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
# The install test checks the shipped systemd units with systemd-analyze verify (no running systemd needed).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The TLS tests make their CA and certificates with the openssl CLI (not in a minimal Debian image).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The completion tests run the generated scripts in real zsh and fish (bash is always there).
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
# The dashboard's browser tests drive Debian's Chromium through playwright-core.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi
# The metrics tests lint /metrics with promtool, from Debian's prometheus (8 s to install without its
# recommends; on a host with systemd its package also enables a Prometheus server on :9090).
command -v promtool >/dev/null 2>&1 || APT_LEAN=1 apt_install prometheus

bun install --frozen-lockfile --silent

[ "${1:-}" = "--services" ] || exit 0

# The store's conformance and cluster tests need both server databases, and the broker link tests both brokers
# (src/transports/broker/link.test.ts also runs its own mosquitto and calls rabbitmqctl): they never skip.
need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v rabbitmq-server >/dev/null 2>&1 || need+=(rabbitmq-server)
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi

# Test services on loopback: start any that is down (commands from the machine's own set-up).
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 120); do up "$1" && return 0; sleep 0.5; done; say "$2 did not come up on port $1"; return 1; }
start() { # port name command...
  local port=$1 name=$2; shift 2
  up "$port" && return 0
  command -v "$1" >/dev/null 2>&1 || { say "$name is not installed; skipping"; return 0; }
  say "starting $name"
  "$@" >/dev/null 2>&1 || true
  wait_up "$port" "$name" || true
}
start 5432 postgresql bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start'
start 6379 redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 5672 rabbitmq rabbitmq-server -detached
start 1883 mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
start 4222 nats start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
[ -d /run/mysqld ] || install -d -o mysql -g mysql /run/mysqld
start 3306 mariadb start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql

# The test role, over each server's local socket as its superuser (whatever 127.0.0.1's auth method):
# tests log in over TCP as dffmpeg_test and create a database per test (dfft_*), dropping it after.
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sudo -n -u postgres sh -c "$1"; fi; }
as_postgres "psql -qAtc \"DO \\\$\\\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dffmpeg_test') THEN CREATE ROLE dffmpeg_test LOGIN CREATEDB PASSWORD 'dffmpeg_test'; END IF;
END \\\$\\\$\"" >/dev/null || say "could not create the PostgreSQL test role"
if [ "$(id -u)" = 0 ]; then MARIADB=(mariadb); else MARIADB=(sudo -n mariadb); fi
"${MARIADB[@]}" -e "CREATE USER IF NOT EXISTS 'dffmpeg_test'@'127.0.0.1' IDENTIFIED BY 'dffmpeg_test';
  CREATE USER IF NOT EXISTS 'dffmpeg_test'@'localhost' IDENTIFIED BY 'dffmpeg_test';
  GRANT ALL PRIVILEGES ON \`dfft\\_%\`.* TO 'dffmpeg_test'@'127.0.0.1';
  GRANT ALL PRIVILEGES ON \`dfft\\_%\`.* TO 'dffmpeg_test'@'localhost';" || say "could not create the MariaDB test user"
exit 0
