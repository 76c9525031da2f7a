# syntax=docker/dockerfile:1
# Daz in a container: `docker build -t daz .` (or `docker compose up`, see
# docker-compose.yml). Configure with DAZ_* environment variables, e.g.
# DAZ_CORE__DATABASE__URL, DAZ_CHANNEL, DAZ_USERNAME, DAZ_PASSWORD.

# ---- build: compile bin/daz ----
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config lua5.4 \
      libwebsockets-dev libuv1-dev libpq-dev liblua5.4-dev \
      libmicrohttpd-dev libjansson-dev libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .git is not in the build context; pass the revision: --build-arg DAZ_BUILD=$(git rev-parse --short HEAD)
ARG DAZ_BUILD=unknown
# (mkdir: an empty sql/ or lua/ is not in the context, and COPY below needs them)
RUN make -j"$(nproc)" BUILD_ID="$DAZ_BUILD" && test -x bin/daz && mkdir -p sql lua

# ---- runtime: only the shared libraries bin/daz needs ----
FROM debian:12-slim
# Runtime halves of the -dev packages above (bookworm names), plus
# libwebsockets-evlib-uv: libwebsockets 4.1 loads its libuv event loop as a plugin.
# curl is for the health check.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libwebsockets17 libwebsockets-evlib-uv libuv1 libpq5 liblua5.4-0 lua-cjson \
      libmicrohttpd12 libjansson4 libssl3 libcurl4 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system daz \
 && useradd --system --gid daz --home-dir /opt/daz --no-create-home --shell /usr/sbin/nologin daz

WORKDIR /opt/daz
# The binary finds lua/ and sql/ relative to its working directory.
COPY --from=build /src/bin/daz /opt/daz/bin/daz
COPY --from=build /src/lua/ /opt/daz/lua/
COPY --from=build /src/sql/ /opt/daz/sql/
COPY --from=build /src/config.lua /opt/daz/config.lua
# var/ holds the spool; owned by daz so a fresh named volume mounted here inherits that.
RUN mkdir -p /opt/daz/var/spool && chown -R daz:daz /opt/daz/var

# The health server binds 127.0.0.1 by default; in a container it must listen
# on all interfaces to be published. Logs are JSON lines (no terminal).
ENV DAZ_HEALTH__BIND=0.0.0.0
EXPOSE 8080

USER daz
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${DAZ_HEALTH__PORT:-8080}/health/live" || exit 1

ENTRYPOINT ["/opt/daz/bin/daz"]
CMD ["-config", "/opt/daz/config.lua"]
