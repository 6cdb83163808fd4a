# kvs: kvsd and kvscli on a distroless static base, run as a non-root user.
#
#   docker build -t kvs .
#   docker run -p 23333:23333 -v kvs-data:/data kvs
#
# The data (the file backend's -data directory) lives in the /data volume;
# kvsd listens on :23333. Flags go after the image name, e.g.
# `docker run kvs -backend memory`; every flag also has its KVS_ twin.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/kvsd ./kvscli \
 && mkdir /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kvsd /out/kvscli /usr/local/bin/
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
ENV KVS_ADDR=:23333 KVS_DATA=/data
VOLUME /data
EXPOSE 23333
ENTRYPOINT ["/usr/local/bin/kvsd"]
