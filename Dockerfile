# syntax=docker/dockerfile:1
# Adds the self-contained backfill_codex_usage_cache (a trimmed musl Java runtime,
# the jar and a /bin/sh launcher) to a released backend image, next to ./migrate:
#
#   docker build --build-arg BACKEND_IMAGE=ghcr.io/multica-ai/multica-backend:<tag> -t <new tag> .
#   kubectl ... command: ["./backfill_codex_usage_cache"]
#
# The runtime is native code: build for the cluster's platform (for example
# --platform linux/amd64); both stages then use the same architecture.

ARG BACKEND_IMAGE=ghcr.io/multica-ai/multica-backend:latest

# The backend image is Alpine (musl), so the runtime must be linked from a musl JDK.
FROM eclipse-temurin:17-jdk-alpine AS build
# bash runs ./jbang and build_payload.sh; maven lets ./jbang fetch the JBang CLI.
RUN apk add --no-cache bash maven
WORKDIR /src
COPY jbang build_payload.sh backfill_codex_usage_cache.java ./
RUN --mount=type=cache,target=/root/.m2 ./build_payload.sh /out

# Runs the payload inside the real backend image, as its own user, so a missing
# shared library or a permission problem fails the build instead of the Job.
FROM ${BACKEND_IMAGE} AS verify
COPY --from=build /out/ /app/
RUN ["/app/backfill_codex_usage_cache", "--help"]

FROM ${BACKEND_IMAGE}
COPY --from=verify /app/backfill_codex_usage_cache /app/backfill_codex_usage_cache
COPY --from=verify /app/backfill_codex_usage_cache.d/ /app/backfill_codex_usage_cache.d/
