# syntax=docker/dockerfile:1
# floodgate's container image. Every build step below is a script or preset that the test
# command (scripts/test.sh) also runs, so CI proves them on a plain Debian 12 machine even where
# no container engine is available; tests/chart/test_dockerfile.py checks that this stays so.
#
#   docker build -t floodgate:dev .
#   docker run --read-only -v floodgate-data:/var/lib/floodgate -p 8080:8080 \
#     -e PREFECT_API_URL=http://prefect:4200/api floodgate:dev

# ---- build: the Debian packages and the CMake preset the test command uses ----
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
COPY scripts/lib/apt.sh scripts/lib/apt.sh
RUN bash scripts/install-deps.sh
COPY . .
RUN cmake --preset ci >/dev/null && cmake --build --preset ci -j 2 --target floodgated
# The runtime stage installs exactly the packages holding the libraries floodgated loads.
RUN bash scripts/runtime-libs.sh build/ci/service/floodgated > /runtime-packages.txt \
    && cp build/ci/service/floodgated /floodgated

# ---- runtime: slim, non-root, read-only root file system, store on a volume ----
FROM debian:12-slim AS runtime
COPY --from=build /runtime-packages.txt /runtime-packages.txt
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive xargs -a /runtime-packages.txt \
       apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 floodgate \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin floodgate \
    && mkdir -p /var/lib/floodgate && chown 10001:10001 /var/lib/floodgate
COPY --from=build /floodgated /usr/local/bin/floodgated
ENV FLOODGATE_LISTEN=0.0.0.0:8080 \
    FLOODGATE_DB=sqlite:///var/lib/floodgate/floodgate.db
VOLUME ["/var/lib/floodgate"]
WORKDIR /var/lib/floodgate
USER 10001:10001
EXPOSE 8080
# floodgated is PID 1: it installs its own SIGTERM/SIGINT handlers (drain, then exit), so no
# init shim is needed; exec form keeps a shell out of the way of the signal.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/floodgated"]
