# Dockerfile: the loadtestd container image. Stage `build` compiles the daemon on Debian 12
# with the -dev packages; the final stage is debian:12-slim with only the runtime
# libraries, running as the non-root user `loadtestd` with its SQLite database on the
# volume /var/lib/loadtestd. Configuration comes from LOADTESTD_* variables (see
# `loadtestd --help`); extra flags can follow the image name in `docker run`.
#   docker build -t loadtestd .
#   docker run --rm -p 127.0.0.1:8088:8088 -v loadtestd-data:/var/lib/loadtestd loadtestd

FROM debian:12 AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev libpq-dev \
        libhiredis-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Built outside /src so that a build/ tree copied in from the host cannot get in the way;
# only the daemon is built (the tests run in CI, not here).
RUN cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build /tmp/build -j "$(nproc)" --target loadtestd \
    && bin=$(find /tmp/build -type f -name loadtestd -perm -u+x | head -n 1) \
    && test -n "$bin" \
    && install -D -m 0755 "$bin" /out/loadtestd \
    && /out/loadtestd --version

FROM debian:12-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libmicrohttpd12 libcurl4 libjansson4 libsqlite3-0 libpq5 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/loadtestd \
        --shell /usr/sbin/nologin loadtestd \
    && install -d -o loadtestd -g loadtestd -m 0750 /var/lib/loadtestd
COPY --from=build /out/loadtestd /usr/local/bin/loadtestd
ENV LOADTESTD_DB=/var/lib/loadtestd/loadtestd.db \
    LOADTESTD_LISTEN=0.0.0.0:8088
# Declared after the directory got its owner: a new volume starts with that ownership.
VOLUME /var/lib/loadtestd
WORKDIR /var/lib/loadtestd
USER loadtestd
EXPOSE 8088
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8088/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/loadtestd"]
