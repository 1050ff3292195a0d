#!/usr/bin/env bash
# The main job, on a fresh Debian machine: installs Bun, ffmpeg and bubblewrap if missing, builds dffmpeg, starts a
# coordinator (embedded SQLite) and a worker in a temporary directory, runs a real ffprobe and a real
# transcode through the ffmpeg/ffprobe proxy, shows the results and `dffmpeg admin jobs ls`, and stops
# everything. The worker sees the media at a different path than the client (path-blind mapping).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bun scripts/build.ts --single
BIN="$PWD/dist/dffmpeg"

DEMO=$(mktemp -d /tmp/dffmpeg-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DEMO"
}
trap cleanup EXIT
cd "$DEMO"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "storage: the client sees $DEMO/nas/movies, the worker sees $DEMO/worker-mnt/movies"
mkdir -p nas/movies bin
# The worker runs every job in a bubblewrap sandbox, never as root: run as root (as on a fresh machine),
# it starts ffmpeg as `nobody`, who must be able to reach the storage and write into it.
RUN_AS=""
if [ "$(id -u)" = 0 ]; then
  RUN_AS="run_as: nobody"
  chmod 711 "$DEMO"
  chown nobody nas/movies
fi
ln -s "$DEMO/nas" worker-mnt
ffmpeg -v error -f lavfi -i testsrc2=duration=5:size=640x360:rate=25 -f lavfi -i sine=frequency=440:duration=5 \
  -c:v libx264 -preset ultrafast -c:a aac -shortest nas/movies/sample.mkv
ls -l nas/movies

step "coordinator (SQLite at $DEMO/dffmpeg.db, free port)"
printf 'host: 127.0.0.1\nport: 0\ndatabase: { engine: sqlite, path: ./dffmpeg.db }\n' > coordinator.yaml
# Keys are secrets: --key-file writes them private to this user (0600), whatever the umask.
"$BIN" admin --config coordinator.yaml users add worker1 --role worker --key-file worker1.key
"$BIN" admin --config coordinator.yaml users add jellyfin --role client --key-file jellyfin.key
"$BIN" coordinator --config coordinator.yaml 2> coordinator.log &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'listening on' coordinator.log && break; sleep 0.05; done
PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' coordinator.log | grep -o '[0-9]*$')
grep 'listening on' coordinator.log
"$BIN" admin --config coordinator.yaml users ls

step "worker (mounts the same storage at another path)"
cat > worker.yaml <<YAML
client_id: worker1
hmac_key_file: worker1.key
coordinator: { host: 127.0.0.1, port: $PORT }
binaries: { ffmpeg: $(command -v ffmpeg), ffprobe: $(command -v ffprobe) }
paths: { Movies: $DEMO/worker-mnt/movies }
max_jobs: 2
$RUN_AS
YAML
"$BIN" worker --config worker.yaml 2> worker.log &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'worker registered' worker.log && break; sleep 0.05; done
grep 'worker registered' worker.log | tail -1

step "client: ffmpeg and ffprobe are symlinks to the dffmpeg binary"
cat > client.yaml <<YAML
client_id: jellyfin
hmac_key_file: jellyfin.key
coordinator: { host: 127.0.0.1, port: $PORT }
paths: { Movies: $DEMO/nas/movies }
YAML
ln -s "$BIN" bin/ffmpeg
ln -s "$BIN" bin/ffprobe
export DFFMPEG_CLIENT_CONFIG="$DEMO/client.yaml"
ls -l bin

step "ffprobe through the proxy"
bin/ffprobe -v error -show_entries format=filename,duration:stream=codec_name,width,height -of json "$DEMO/nas/movies/sample.mkv"
echo "exit code: $?"

step "transcode through the proxy (stderr progress relayed live)"
(cd nas/movies && "$DEMO/bin/ffmpeg" -hide_banner -y -i sample.mkv -vf scale=320:180 -c:v libx264 -preset ultrafast -c:a aac sample-320.mp4)
echo "exit code: $?"
ffprobe -v error -show_entries format=duration:stream=codec_name,width,height -of compact nas/movies/sample-320.mp4

step "a failing command keeps ffmpeg's own exit code and message"
set +e
bin/ffmpeg -hide_banner -i "$DEMO/nas/movies/missing.mkv"
echo "exit code: $? (local ffmpeg: $(ffmpeg -hide_banner -i "$DEMO/nas/movies/missing.mkv" 2>/dev/null; echo $?))"
set -e

step "dffmpeg admin jobs ls"
"$BIN" admin --config coordinator.yaml jobs ls

step "stopping"
