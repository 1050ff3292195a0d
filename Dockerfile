# syntax=docker/dockerfile:1
# One image for every dffmpeg role: the command picks it (`coordinator`, `worker`, `admin ...`, `client ...`).
# docs/docker.md explains the image, deploy/compose.yaml runs a coordinator, a worker and Jellyfin with it.
#   docker build -t dffmpeg .                                   coordinator by default, Debian's ffmpeg
#   docker build -t dffmpeg-worker-jellyfin --target jellyfin-worker .   a worker with jellyfin-ffmpeg
# Build arguments: DFFMPEG_UID / DFFMPEG_GID (default 1000), the ids the processes run as; they must match the
# media server's and the NAS's owner of the media and transcode folders (docs/jellyfin.md, "Users and ids").
ARG DEBIAN_RELEASE=bookworm

# Build: Bun 1.4.5 from npm, the locked dependencies, one compiled binary (what scripts/setup.sh does).
FROM node:22-${DEBIAN_RELEASE}-slim AS build
RUN npm install -g --silent bun@1.4.5
WORKDIR /src
COPY package.json bun.lock bunfig.toml tsconfig.json ./
RUN bun install --frozen-lockfile --silent
COPY src ./src
COPY scripts ./scripts
RUN bun scripts/build.ts --single

# Runtime: Debian with ffmpeg, bubblewrap (the worker's sandbox), util-linux (setpriv), curl (HEALTHCHECK),
# sqlite3 (online backups).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG DFFMPEG_UID=1000
ARG DFFMPEG_GID=1000
COPY deploy/image-setup.sh /usr/local/share/dffmpeg/image-setup.sh
COPY --from=build /src/dist/dffmpeg /tmp/dffmpeg
RUN sh /usr/local/share/dffmpeg/image-setup.sh --packages --binary /tmp/dffmpeg \
      --uid "${DFFMPEG_UID}" --gid "${DFFMPEG_GID}" \
 && rm /tmp/dffmpeg
USER dffmpeg
WORKDIR /var/lib/dffmpeg
# The coordinator's /health (set DFFMPEG_HEALTH_URL when it listens elsewhere; workers have no /health:
# compose disables the check for them).
ENV DFFMPEG_HEALTH_URL=http://127.0.0.1:8000/health
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "$DFFMPEG_HEALTH_URL" || exit 1
ENTRYPOINT ["/usr/local/bin/dffmpeg"]
CMD ["coordinator", "--config", "/etc/dffmpeg/coordinator.yaml"]

# A worker for Jellyfin: the same image plus jellyfin-ffmpeg (/usr/lib/jellyfin-ffmpeg/ffmpeg), the build
# Jellyfin's command lines are written for (docs/jellyfin.md, "jellyfin-ffmpeg on the workers").
FROM runtime AS jellyfin-worker
ARG DFFMPEG_UID=1000
ARG DFFMPEG_GID=1000
USER root
RUN sh /usr/local/share/dffmpeg/image-setup.sh --jellyfin-ffmpeg --binary /usr/local/bin/dffmpeg \
      --uid "${DFFMPEG_UID}" --gid "${DFFMPEG_GID}"
USER dffmpeg
HEALTHCHECK NONE
CMD ["worker", "--config", "/etc/dffmpeg/worker.yaml"]

# The default target: the runtime image, coordinator as its command.
FROM runtime AS dffmpeg
