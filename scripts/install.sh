#!/usr/bin/env bash
# Installs dffmpeg for one role on this host, idempotently (README "Setting up a farm"; the layout is
# in docs/operations.md#installed-layout):
#   $PREFIX/bin/dffmpeg                      the binary
#   $PREFIX/lib/dffmpeg/{ffmpeg,ffprobe}     client role: the proxy symlinks a media server points at
#   /etc/dffmpeg/ (root:USER 0750)           ROLE.yaml examples (0640, never overwritten), keys/ (root:USER 0750)
#   /var/lib/dffmpeg/ (USER:USER 0750)       the SQLite database and the coordinator secret
#   /etc/systemd/system/dffmpeg-ROLE.service from packaging/systemd (coordinator and worker roles)
# and the service user and group USER (a system user without a login shell, home /var/lib/dffmpeg).
# Running it again changes nothing that is already right: it says what it changed, or that nothing was.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh --role coordinator|worker|client [--prefix DIR] [--root DIR] [--binary PATH]
                  [--user NAME] [--client-group GROUP] [--no-systemd]

  --role          what this host runs (run the script once per role on a host with several)
  --prefix DIR    where the binary goes: DIR/bin/dffmpeg (default /usr/local)
  --root DIR      install the files under DIR instead of / (a scratch root, an image being built); the
                  service user is still created on this host, and the files belong to it
  --binary PATH   the dffmpeg binary to install (default ./dist/dffmpeg, else the one beside this script)
  --user NAME     service user and group (default dffmpeg)
  --client-group GROUP
                  client role: the media server's group (e.g. jellyfin) gets read access to
                  /etc/dffmpeg/client.yaml and the client's key file
  --no-systemd    do not install the systemd units
EOF
}

say() { printf 'install: %s\n' "$*"; }
die() {
  printf 'install: %s\n' "$1" >&2
  exit "${2:-1}"
}

ROLE="" PREFIX=/usr/local ROOT=/ BINARY="" SVC=dffmpeg CLIENT_GROUP="" SYSTEMD=yes
while [ $# -gt 0 ]; do
  case "$1" in
  --role | --prefix | --root | --binary | --user | --client-group)
    [ $# -ge 2 ] || die "$1 needs a value (--help for usage)" 2
    case "$1" in
    --role) ROLE=$2 ;;
    --prefix) PREFIX=$2 ;;
    --root) ROOT=$2 ;;
    --binary) BINARY=$2 ;;
    --user) SVC=$2 ;;
    --client-group) CLIENT_GROUP=$2 ;;
    esac
    shift 2
    ;;
  --no-systemd)
    SYSTEMD=no
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) die "unknown argument $1 (--help for usage)" 2 ;;
  esac
done

case "$ROLE" in
coordinator | worker | client) ;;
"") die "--role is required: coordinator, worker or client (--help for usage)" 2 ;;
*) die "--role must be coordinator, worker or client, not $ROLE" 2 ;;
esac
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path, not $PREFIX" 2 ;; esac
case "$ROOT" in /*) ;; *) die "--root must be an absolute path, not $ROOT" 2 ;; esac
[[ "$SVC" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "--user must be a user name (lowercase letters, digits, _ or -), not $SVC" 2
if [ -n "$CLIENT_GROUP" ]; then
  [ "$ROLE" = client ] || die "--client-group is for --role client" 2
  getent group "$CLIENT_GROUP" >/dev/null || die "--client-group $CLIENT_GROUP: no such group on this host (install the media server first)" 2
fi
[ "$(id -u)" = 0 ] || die "run it as root (it creates a system user and files owned by it): sudo $0 ..." 1

HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "$BINARY" ]; then
  for b in ./dist/dffmpeg "$HERE/../dist/dffmpeg" "$HERE/dffmpeg"; do
    if [ -f "$b" ]; then
      BINARY=$b
      break
    fi
  done
  [ -n "$BINARY" ] || die "no ./dist/dffmpeg: build it (bun scripts/build.ts --single) or pass --binary PATH" 1
fi
if [ ! -f "$BINARY" ] || [ ! -x "$BINARY" ]; then die "--binary $BINARY is not an executable file" 1; fi
UNITS_SRC="$HERE/../packaging/systemd"

R=${ROOT%/}
BIN="$R$PREFIX/bin/dffmpeg"
ETC="$R/etc/dffmpeg"
KEYS="$ETC/keys"
STATE="$R/var/lib/dffmpeg"
SHIMS="$R$PREFIX/lib/dffmpeg"
UNITS="$R/etc/systemd/system"
changed=0
did() {
  changed=$((changed + 1))
  say "$*"
}

# --- the service user and group ---------------------------------------------------------------------
if ! getent group "$SVC" >/dev/null; then
  groupadd --system "$SVC"
  did "created group $SVC (system)"
fi
if ! getent passwd "$SVC" >/dev/null; then
  useradd --system --gid "$SVC" --home-dir /var/lib/dffmpeg --no-create-home --shell /usr/sbin/nologin \
    --comment "dffmpeg service" "$SVC"
  did "created user $SVC (system, no login shell, home /var/lib/dffmpeg)"
fi

# ensure_dir PATH OWNER:GROUP MODE: creates it, or mends its owner and mode.
ensure_dir() {
  local path=$1 owner=$2 mode=$3
  if [ ! -d "$path" ]; then
    install -d -o "${owner%:*}" -g "${owner#*:}" -m "$mode" "$path"
    did "created $path ($owner $mode)"
    return
  fi
  ensure_file "$path" "$owner" "$mode"
}

# make_dir PATH: creates a system folder (root:root 0755) that is missing; an existing one is left as it is.
make_dir() {
  if [ ! -d "$1" ]; then
    install -d -o root -g root -m 0755 "$1"
    did "created $1 (root:root 0755)"
  fi
}

# ensure_file PATH OWNER:GROUP MODE: mends the owner and mode of a file or folder that exists.
ensure_file() {
  local path=$1 owner=$2 mode=$3
  if [ "$(stat -c %U:%G "$path")" != "$owner" ]; then
    chown "$owner" "$path"
    did "gave $path to $owner"
  fi
  if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
    chmod "$mode" "$path"
    did "set $path to mode $mode"
  fi
}

# write_new PATH OWNER:GROUP MODE < CONTENT: writes a config only when it does not exist (an edited one is
# never touched, only its owner and mode mended).
write_new() {
  local path=$1 owner=$2 mode=$3 tmp
  if [ -e "$path" ]; then
    cat >/dev/null
    ensure_file "$path" "$owner" "$mode"
    return
  fi
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chown "$owner" "$tmp"
  chmod "$mode" "$tmp"
  mv "$tmp" "$path"
  did "wrote $path ($owner $mode)"
}

# --- the binary -------------------------------------------------------------------------------------
make_dir "$R$PREFIX/bin"
if [ ! -f "$BIN" ] || ! cmp -s "$BINARY" "$BIN"; then
  what=$([ -f "$BIN" ] && echo updated || echo installed)
  install -m 0755 -o root -g root "$BINARY" "$BIN"
  did "$what $BIN ($("$BIN" --version 2>/dev/null || echo "version unknown"))"
fi

# --- folders ----------------------------------------------------------------------------------------
# With --client-group (or once a client install gave it) others may pass through /etc/dffmpeg and keys/
# (0751, not list them): the media server reaches client.yaml and its key by name; every other file
# there is 0640 root:$SVC.
dirmode=0750
if [ -n "$CLIENT_GROUP" ] || [ "$(stat -c %a "$ETC" 2>/dev/null)" = 751 ]; then dirmode=0751; fi
ensure_dir "$ETC" "root:$SVC" "$dirmode"
ensure_dir "$KEYS" "root:$SVC" "$dirmode"
ensure_dir "$STATE" "$SVC:$SVC" 0750

# --- the role ---------------------------------------------------------------------------------------
case "$ROLE" in
coordinator)
  write_new "$ETC/coordinator.yaml" "root:$SVC" 0640 <<'EOF'
# dffmpeg coordinator. Every key: docs/configuration.md. Written by scripts/install.sh, never overwritten.
host: 127.0.0.1          # 0.0.0.0 (or this host's address) lets workers and clients on other hosts in
port: 8000
database: { engine: sqlite, path: /var/lib/dffmpeg/dffmpeg.db }
# The secret the stored keys are encrypted under: default <database>.secret, here
# /var/lib/dffmpeg/dffmpeg.db.secret. With PostgreSQL or MySQL set it to a file the service user owns:
# secret_key_file: /var/lib/dffmpeg/dffmpeg.secret
allowed_binaries: [ffmpeg, ffprobe]
EOF
  # Files a root `dffmpeg admin` (or an older version) left to root in the state folder: the service
  # could not open them.
  for f in "$STATE"/dffmpeg.db "$STATE"/dffmpeg.db-wal "$STATE"/dffmpeg.db-shm "$STATE"/dffmpeg.db.secret \
    "$STATE"/dffmpeg.secret; do
    if [ -e "$f" ] && [ "$(stat -c %U:%G "$f")" != "$SVC:$SVC" ]; then
      chown "$SVC:$SVC" "$f"
      did "gave $f to $SVC:$SVC (the coordinator runs as $SVC)"
    fi
  done
  ;;
worker)
  write_new "$ETC/worker.yaml" "root:$SVC" 0640 <<'EOF'
# dffmpeg worker. Every key: docs/configuration.md. Written by scripts/install.sh, never overwritten.
client_id: worker1                 # the name given to `dffmpeg admin users add`
hmac_key_file: keys/worker1.key    # relative to this file: /etc/dffmpeg/keys/worker1.key
coordinator: { scheme: http, host: 127.0.0.1, port: 8000 }
binaries: { ffmpeg: /usr/bin/ffmpeg, ffprobe: /usr/bin/ffprobe }
# The storage, by variable name (the clients name the same variables): e.g.
#   paths: { Movies: /mnt/nas/movies, Transcodes: /mnt/nas/transcodes }
# The service user needs read and write access there, and the roots jobs write to must also be listed
# in /etc/systemd/system/dffmpeg-worker.service.d/media.conf (the unit makes the rest read-only).
paths: {}
EOF
  ;;
client)
  group=${CLIENT_GROUP:-$SVC}
  write_new "$ETC/client.yaml" "root:$group" 0640 <<'EOF'
# dffmpeg client, also read by the ffmpeg/ffprobe symlinks in /usr/local/lib/dffmpeg. Every key:
# docs/configuration.md. Written by scripts/install.sh, never overwritten.
client_id: jellyfin                # the name given to `dffmpeg admin users add`
hmac_key_file: keys/jellyfin.key   # relative to this file: /etc/dffmpeg/keys/jellyfin.key
coordinator: { host: 127.0.0.1, port: 8000 }
# The storage as this host sees it, with the workers' variable names: e.g.
#   paths: { Movies: /media/movies, Transcodes: /var/lib/jellyfin/transcodes }
paths: {}
EOF
  # The client's key, once it is there: readable by the media server's group.
  key=$(sed -n 's/^hmac_key_file:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$ETC/client.yaml" | head -n 1)
  case "$key" in /*) keypath="$R$key" ;; "") keypath="" ;; *) keypath="$ETC/$key" ;; esac
  if [ -n "$keypath" ] && [ -f "$keypath" ]; then ensure_file "$keypath" "root:$group" 0640; fi
  make_dir "$SHIMS"
  for tool in ffmpeg ffprobe; do
    if [ -L "$SHIMS/$tool" ] && [ "$(readlink "$SHIMS/$tool")" = ../../bin/dffmpeg ]; then continue; fi
    [ ! -e "$SHIMS/$tool" ] || [ -L "$SHIMS/$tool" ] || die "$SHIMS/$tool exists and is not a symlink: move it away first" 1
    ln -sfn ../../bin/dffmpeg "$SHIMS/$tool"
    did "linked $SHIMS/$tool -> $PREFIX/bin/dffmpeg"
  done
  ;;
esac

# --- systemd ----------------------------------------------------------------------------------------
units_changed=0
if [ "$SYSTEMD" = yes ] && [ "$ROLE" != client ]; then
  src="$UNITS_SRC/dffmpeg-$ROLE.service"
  [ -f "$src" ] || die "$src is missing (run the script from a dffmpeg checkout or release), or pass --no-systemd" 1
  # The groups of SupplementaryGroups= this host has (a missing one would stop the unit from starting).
  groups=""
  # shellcheck disable=SC2013 # the line's words are the group names
  for g in $(sed -n 's/^SupplementaryGroups=//p' "$src"); do
    if getent group "$g" >/dev/null; then groups="$groups $g"; fi
  done
  groups=${groups# }
  make_dir "$UNITS"
  unit="$UNITS/dffmpeg-$ROLE.service"
  # Made outside $UNITS, so that a run that changes nothing leaves that folder as it was.
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  sed -e "s|^ExecStart=/usr/local/bin/dffmpeg |ExecStart=$PREFIX/bin/dffmpeg |" \
    -e "s|^User=dffmpeg\$|User=$SVC|" -e "s|^Group=dffmpeg\$|Group=$SVC|" \
    -e "s|^SupplementaryGroups=.*|${groups:+SupplementaryGroups=$groups}|" "$src" >"$tmp"
  if [ -f "$unit" ] && cmp -s "$tmp" "$unit"; then
    :
  else
    what=$([ -f "$unit" ] && echo updated || echo installed)
    install -m 0644 -o root -g root "$tmp" "$unit"
    units_changed=1
    did "$what $unit${groups:+ (groups: $groups)}"
  fi
  if [ "$ROLE" = worker ]; then
    make_dir "$unit.d"
    if [ ! -e "$unit.d/media.conf" ]; then
      install -m 0644 -o root -g root "$UNITS_SRC/dffmpeg-worker.service.d/media.conf" "$unit.d/media.conf"
      units_changed=1
      did "wrote $unit.d/media.conf (list the media roots jobs write to there)"
    fi
  fi
  if [ "$units_changed" = 1 ]; then
    if [ -z "$R" ] && [ -d /run/systemd/system ]; then
      systemctl daemon-reload
      say "ran systemctl daemon-reload"
    else
      say "systemd is not running here or --root is not /: no systemctl daemon-reload"
    fi
  fi
fi

[ "$changed" -gt 0 ] || say "nothing to change: $ROLE is installed as it should be"

# --- next steps -------------------------------------------------------------------------------------
echo
say "next steps ($ROLE):"
case "$ROLE" in
coordinator)
  cat <<EOF
  1. edit /etc/dffmpeg/coordinator.yaml (host: 0.0.0.0 to serve other hosts)
  2. create the identities, as root, before or after the first start (files end up owned right):
       dffmpeg admin users add worker1 --role worker --key-file /etc/dffmpeg/keys/worker1.key
       dffmpeg admin users add jellyfin --role client --key-file /etc/dffmpeg/keys/jellyfin.key
     and copy each key to its host's /etc/dffmpeg/keys/ (0640 root:$SVC; the client's: see the client role)
  3. systemctl enable --now dffmpeg-coordinator; journalctl -u dffmpeg-coordinator shows "listening on"
EOF
  ;;
worker)
  cat <<EOF
  1. put the worker's key in /etc/dffmpeg/keys/worker1.key (made on the coordinator host:
       dffmpeg admin users add worker1 --role worker --key-file /etc/dffmpeg/keys/worker1.key),
     0640 root:$SVC: install -m 0640 -o root -g $SVC worker1.key /etc/dffmpeg/keys/worker1.key
  2. edit /etc/dffmpeg/worker.yaml: client_id, coordinator.host, paths; give $SVC read/write access to
     the media roots and list those jobs write to in /etc/systemd/system/dffmpeg-worker.service.d/media.conf
  3. systemctl enable --now dffmpeg-worker; journalctl -u dffmpeg-worker shows it registered
EOF
  ;;
client)
  g=${CLIENT_GROUP:-$SVC}
  cat <<EOF
  1. put the client's key in /etc/dffmpeg/keys/jellyfin.key (made on the coordinator host), 0640 root:$g:
       install -m 0640 -o root -g $g jellyfin.key /etc/dffmpeg/keys/jellyfin.key
     (on the coordinator host itself: chgrp $g /etc/dffmpeg/keys/jellyfin.key); running this script
     again with the same options mends it
  2. edit /etc/dffmpeg/client.yaml: client_id, coordinator.host, paths
  3. point the media server's FFmpeg path at $PREFIX/lib/dffmpeg/ffmpeg (Jellyfin: docs/jellyfin.md);
     check with: $PREFIX/lib/dffmpeg/ffprobe -version
EOF
  ;;
esac
