# syntax=docker/dockerfile:1
#
# The service as a static binary (modernc SQLite and lib/pq are pure Go: CGO_ENABLED=0) in a
# distroless image: no shell, no package manager, run as the unprivileged user 65532.
#
#   docker build -t apikeys .
#   docker run --rm -p 127.0.0.1:8080:8080 -v apikeys-data:/data apikeys   # SQLite in /data
#
# docker-compose.yml runs it on PostgreSQL. Any `apikeys` command runs the same way:
# `docker run --rm apikeys --help`.

# The newest 1.26 patch release; it must be at least the go line of go.mod (the image sets
# GOTOOLCHAIN=local, so an older one fails rather than downloads a toolchain).
ARG GO_VERSION=1.26

# Built on the builder's own platform and cross-compiled for the target's (pure Go), so a
# multi-platform build (docker buildx build --platform linux/amd64,linux/arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH
# What apikeys --version prints (the context holds no .git):
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) .
ARG VERSION="" COMMIT=""
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/apikeys ./cmd/apikeys \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="apikeys" \
      org.opencontainers.image.description="Issues, lists, rotates, revokes and verifies API keys" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/apikeys /apikeys
# The SQLite database's directory, writable by the service's user alone; mount a volume there
# to keep it. With APIKEYS_DATABASE_URL=postgres://… it stays empty.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV APIKEYS_ADDR=:8080 \
    APIKEYS_DATABASE_URL=file:/data/apikeys.db
EXPOSE 8080
# Exec form: the image has no shell. `apikeys healthcheck` asks /readyz on APIKEYS_ADDR.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/apikeys", "healthcheck"]
ENTRYPOINT ["/apikeys"]
CMD ["serve"]
