# syntax=docker/dockerfile:1
#
# ory-ext-authz: a static binary on distroless, running as nonroot (65532).
#
#   docker build -t ory-ext-authz --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run --rm -p 9001:9001 -p 9002:9002 \
#     -e ORY_EXT_AUTHZ_ORY_URL=https://auth.example.com/ -e ORY_EXT_AUTHZ_TOKENIZE_AS=mesh ory-ext-authz
#
# The "build" stage has a shell and the binary at /out/ory-ext-authz;
# deploy/envoy/docker-compose.yaml uses it to create a signing key.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ory-ext-authz ./cmd/ory-ext-authz

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ory-ext-authz /ory-ext-authz
# 9001: gRPC (ext_authz, grpc.health.v1, reflection); 9002: HTTP /healthz, /readyz.
EXPOSE 9001 9002
USER nonroot
ENTRYPOINT ["/ory-ext-authz"]
CMD ["serve"]
