# One image with every binary (api, otpctl, dispatcher, webhook-worker).
# Builds with cargo alone: queries are checked at run time, so no database is
# needed at build time.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p api -p dispatcher -p webhook-worker \
 && mkdir /out \
 && cp target/release/api target/release/otpctl target/release/dispatcher target/release/webhook-worker /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 otp
COPY --from=build /out/ /usr/local/bin/
USER otp
ENV LOG_FORMAT=json
CMD ["api"]
