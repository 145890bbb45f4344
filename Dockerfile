# TokenRoute in a container: `docker build -t tokenroute .` then, for example,
#   docker run -p 8080:8080 -p 8081:8081 -v tokenroute-data:/data tokenroute
# runs both planes on the embedded store (SQLite under /data). For production pass
# --config with a file like conf/production.example.toml and the secrets as env vars.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p tokenroute

FROM debian:bookworm-slim
# pg_dump/pg_restore for `tokenroute backup`/`restore` and the nightly backup.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data tokenroute \
    && mkdir -p /data && chown tokenroute /data
COPY --from=build /src/target/release/tokenroute /usr/local/bin/tokenroute
COPY conf/tokenroute.toml /etc/tokenroute/default.toml
# Inside a container the planes listen on every interface; the dashboard is reached as
# http://localhost:8081 (set control-plane.public-url to its real https address).
RUN sed -e 's/127.0.0.1:8080/0.0.0.0:8080/' -e 's/127.0.0.1:8081/0.0.0.0:8081/' \
        -e 's/127.0.0.1:9090/0.0.0.0:9090/' \
        -e 's|^# public-url = .*|public-url = "http://localhost:8081"|' \
        /etc/tokenroute/default.toml > /etc/tokenroute/tokenroute.toml
USER tokenroute
WORKDIR /data
EXPOSE 8080 8081 9090
ENTRYPOINT ["/usr/local/bin/tokenroute", "--config", "/etc/tokenroute/tokenroute.toml"]
CMD ["serve"]
