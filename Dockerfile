# Builds a static binary (modernc SQLite and lib/pq are pure Go) into a minimal image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/apikeys ./cmd/apikeys

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/apikeys /apikeys
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/apikeys", "serve"]
