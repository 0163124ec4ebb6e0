# eventbench in a container: the coordinator, a worker, or a plain run.
#   docker build -t eventbench .
#   docker run --rm eventbench run --url redis://redis:6379 --format json
# Recipes: compose.yaml (docker compose --scale worker=N) and deploy/k8s/
# (kustomize); docs/src/hosts.md explains them.

# Build: the release binary, from the locked dependencies.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin eventbench \
    && strip target/release/eventbench

# Run: distroless (glibc, CA certificates for rediss://, no shell, no package
# manager), as its non-root user. eventbench needs nothing else: it talks to a
# Redis given by --url (its private redis-server is for machines that have one).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/eventbench /usr/local/bin/eventbench
USER nonroot:nonroot
WORKDIR /results
# --metrics-listen 0.0.0.0:9464 serves /metrics here (docs/src/live-export.md).
EXPOSE 9464
ENTRYPOINT ["eventbench"]
CMD ["--help"]
