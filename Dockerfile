# Goldcard switch: a static binary on a distroless base, run as non-root.
#   docker build -t goldcard .
#   docker run -p 8583:8583 -p 8080:8080 -e GOLDCARD_DB=postgres://... \
#     -e GOLDCARD_ADMIN_TOKEN="$(openssl rand -hex 32)" goldcard
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/goldcard/goldcard/switch/internal/daemon.version=${VERSION}" -o /out/goldcard ./switch \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/goldcard /goldcard
COPY --from=build --chown=65532:65532 /out/data /var/lib/goldcard
USER 65532:65532
EXPOSE 8583 8080
ENTRYPOINT ["/goldcard"]
# Inside a container the admin API must listen beyond loopback to be
# reachable, so it needs credentials: the switch refuses to start without
# $GOLDCARD_ADMIN_TOKEN (or client certificates). Probes and the scraper
# read /healthz, /readyz and /metrics without them; publish the port only
# to the operators' network. Give the key-encryption key as $GOLDCARD_KEK
# or --kek-file from a secret mount: without one the switch refuses to
# start (a switch whose admin API other hosts reach never makes its own).
CMD ["serve", "--admin", "0.0.0.0:8080", "--admin-open", "/healthz,/readyz,/metrics", "--data-dir", "/var/lib/goldcard"]
