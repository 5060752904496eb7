# One image with every binary (api, otpctl, dispatcher, webhook-worker).
# Builds with cargo alone: queries are checked at run time, so no database is
# needed at build time.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p api -p dispatcher -p webhook-worker \
 && mkdir /out \
 && cp target/release/api target/release/otpctl target/release/dispatcher target/release/webhook-worker /out/

# Runs as a non-root user (numeric, so Kubernetes' runAsNonRoot can check it)
# and writes nothing to its own filesystem: it runs with a read-only root
# filesystem (deploy/kubernetes, docker-compose.yml), with /tmp mounted
# writable only as a precaution. /var/lib/otp/keys is where docker-compose.yml
# mounts its `keys` volume; a fresh volume takes this directory's owner.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 otp \
 && useradd --system --uid 10001 --gid otp --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin otp \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/otp/keys
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV LOG_FORMAT=json
CMD ["api"]
