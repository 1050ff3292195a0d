#!/bin/sh
# The install steps of the dffmpeg container image (Dockerfile RUNs this), kept in a script so that they can be
# run and checked outside Docker: `sh deploy/image-setup.sh --root DIR --binary dist/dffmpeg` lays the image's
# files out under DIR (test/deploy.test.ts does that in a scratch root).
#
#   --root DIR          where the image's root is (default /)
#   --binary PATH       the compiled dffmpeg to install (default ./dist/dffmpeg)
#   --uid N --gid N     the dffmpeg user's and group's ids (default 1000:1000, the usual first user on a NAS:
#                       the media server, the workers and the NAS must agree, docs/docker.md)
#   --packages          install the runtime's Debian packages (apt-get; --root / only)
#   --jellyfin-ffmpeg   also install jellyfin-ffmpeg7 from repo.jellyfin.org (/usr/lib/jellyfin-ffmpeg; --root / only)
#
# The layout is the install contract's (scripts/install.sh, docs/docker.md): /usr/local/bin/dffmpeg, the shim
# folder /usr/local/lib/dffmpeg/{ffmpeg,ffprobe} (symlinks to the binary), /etc/dffmpeg and /etc/dffmpeg/keys
# (root:dffmpeg 0750), /var/lib/dffmpeg (dffmpeg:dffmpeg 0750, the SQLite database and its secret file).
set -eu

ROOT=/
BINARY=./dist/dffmpeg
UID_=1000
GID_=1000
PACKAGES=0
JELLYFIN=0
PREFIX=/usr/local
NAME=dffmpeg

die() { printf 'image-setup: %s\n' "$*" >&2; exit 2; }
say() { printf 'image-setup: %s\n' "$*" >&2; }
number() { case "$2" in '' | *[!0-9]*) die "$1 needs a number, got '$2'" ;; esac; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; BINARY=$2; shift 2 ;;
    --uid) [ $# -ge 2 ] || die "--uid needs a number"; number --uid "$2"; UID_=$2; shift 2 ;;
    --gid) [ $# -ge 2 ] || die "--gid needs a number"; number --gid "$2"; GID_=$2; shift 2 ;;
    --packages) PACKAGES=1; shift ;;
    --jellyfin-ffmpeg) JELLYFIN=1; shift ;;
    *) die "unknown option $1 (see the top of this script)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root (it creates a user and sets owners)"
[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}   # "" for /, so "$R/etc" is /etc
if [ "$ROOT" != / ] && { [ "$PACKAGES" = 1 ] || [ "$JELLYFIN" = 1 ]; }; then
  die "--packages and --jellyfin-ffmpeg install into the running system: use them with --root / only"
fi

[ -f "$BINARY" ] || die "--binary $BINARY is not a file (bun scripts/build.ts --single builds dist/dffmpeg)"

if [ "$PACKAGES" = 1 ]; then
  # ffmpeg/ffprobe for the worker, bubblewrap for its sandbox, util-linux for setpriv, curl for HEALTHCHECK,
  # sqlite3 for an online backup of the database (docs/upgrading.md).
  say "installing Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    ffmpeg bubblewrap util-linux ca-certificates curl sqlite3 >/dev/null
fi
if [ "$JELLYFIN" = 1 ]; then
  # Jellyfin's own ffmpeg build: Jellyfin sends options only it has (tonemapx, its hardware filters), so a
  # worker serving Jellyfin runs it (docs/jellyfin.md). Needs curl (--packages) for the repository's key.
  command -v curl >/dev/null 2>&1 || die "--jellyfin-ffmpeg needs curl: run with --packages (before or with it)"
  say "installing jellyfin-ffmpeg7 from repo.jellyfin.org"
  . /etc/os-release
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL https://repo.jellyfin.org/jellyfin_team.gpg.key -o /etc/apt/keyrings/jellyfin.asc
  printf 'Types: deb\nURIs: https://repo.jellyfin.org/%s\nSuites: %s\nComponents: main\nSigned-By: /etc/apt/keyrings/jellyfin.asc\n' \
    "$ID" "$VERSION_CODENAME" >/etc/apt/sources.list.d/jellyfin.sources
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jellyfin-ffmpeg7 >/dev/null
fi
if [ "$PACKAGES" = 1 ] || [ "$JELLYFIN" = 1 ]; then
  apt-get clean
  rm -rf /var/lib/apt/lists/*
fi

# The user and group, with fixed ids (a container's files on a volume or a NAS are owned by numbers).
# --prefix edits the files under the root without chrooting into it (shadow 4.13, Debian 12).
for f in passwd group shadow gshadow; do [ -e "$R/etc/$f" ] || die "$R/etc/$f is missing (not a Debian root?)"; done
[ "$ROOT" = / ] && P="" || P="--prefix $ROOT"
# account FILE KIND ID FLAG: 0 when NAME is there with ID, 1 when it must be created; dies on a clash.
account() {
  have=$(awk -F: -v n="$NAME" '$1 == n { print $3; exit }' "$R/etc/$1")
  if [ -n "$have" ]; then
    [ "$have" = "$3" ] || die "$2 $NAME exists with $4 $have, not $3"
    return 0
  fi
  taken=$(awk -F: -v id="$3" '$3 == id { print $1; exit }' "$R/etc/$1")
  [ -z "$taken" ] || die "$4 $3 belongs to $2 $taken already: choose another --$4"
  return 1
}
# shellcheck disable=SC2086
account group group "$GID_" gid || { groupadd $P --gid "$GID_" "$NAME"; say "created group $NAME ($GID_)"; }
# shellcheck disable=SC2086
account passwd user "$UID_" uid || {
  useradd $P --uid "$UID_" --gid "$GID_" --home-dir /var/lib/dffmpeg --no-create-home \
    --shell /usr/sbin/nologin --comment "dffmpeg service" "$NAME"
  say "created user $NAME ($UID_)"
}

# The binary and the shim folder a media server's "FFmpeg path" points at.
# Run again on an image that has it (the jellyfin-worker stage): the binary is already in place.
[ "$BINARY" -ef "$R$PREFIX/bin/dffmpeg" ] || install -D -m 0755 -o 0 -g 0 "$BINARY" "$R$PREFIX/bin/dffmpeg"
install -d -m 0755 -o 0 -g 0 "$R$PREFIX/lib/dffmpeg"
for tool in ffmpeg ffprobe; do ln -sfn "$PREFIX/bin/dffmpeg" "$R$PREFIX/lib/dffmpeg/$tool"; done

# Config (mounted over in a container, docs/docker.md) and state.
install -d -m 0750 -o 0 -g "$GID_" "$R/etc/dffmpeg" "$R/etc/dffmpeg/keys"
install -d -m 0750 -o "$UID_" -g "$GID_" "$R/var/lib/dffmpeg"
say "installed $PREFIX/bin/dffmpeg, $PREFIX/lib/dffmpeg/{ffmpeg,ffprobe}, /etc/dffmpeg, /var/lib/dffmpeg under $ROOT"
