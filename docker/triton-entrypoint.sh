#!/usr/bin/env bash
# Production command line of the moe_ids Triton server: the one place its flags are written down.
#
# The image, docker/compose.yaml and the Kubernetes manifests all start the server through this script, and
# tests/docker runs it against the tritonserver 2.51 of the nvidia-pytriton wheel, so the flags below are
# checked by a real server, not only by reading.
#
# Environment:
#   MOE_IDS_MODEL_REPOSITORY   model repository (default /models)
#   MOE_IDS_ADMIN_KEY_FILE     file holding the admin key (default /run/secrets/moe_ids_admin_key, where both
#                              Docker secrets and the Kubernetes manifests mount it)
#   MOE_IDS_ADMIN_KEY          the admin key itself, when no key file is mounted
#   TRITONSERVER               server binary (default: tritonserver on PATH)
# Extra arguments are appended and override the defaults (e.g. --log-verbose=1).
#
# The admin key guards the APIs that change or expose server state: model load/unload (model-repository),
# shared-memory registration, tracing and log settings. Requests to them must carry the header
# "admin-key: <key>" (gRPC: metadata "triton-grpc-protocol-admin-key: <key>", Triton adds the prefix).
# Inference, health, metadata, model config and statistics stay open:
# clients, probes and Prometheus need them.
set -euo pipefail

repository="${MOE_IDS_MODEL_REPOSITORY:-/models}"
key_file="${MOE_IDS_ADMIN_KEY_FILE:-/run/secrets/moe_ids_admin_key}"
key="${MOE_IDS_ADMIN_KEY:-}"
if [[ -r "${key_file}" ]]; then
    key="$(tr -d '[:space:]' < "${key_file}")"
fi
if [[ -z "${key}" ]]; then
    echo "moe-ids-triton: no admin key: mount one at ${key_file} or set MOE_IDS_ADMIN_KEY" >&2
    exit 64
fi
# The key sits inside a flag value parsed as "<apis>:<header>=<value>", so keep it to unambiguous characters.
if [[ ! "${key}" =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
    echo "moe-ids-triton: admin key must be at least 16 characters of A-Z a-z 0-9 . _ ~ -" >&2
    exit 64
fi
if [[ ! -d "${repository}" ]]; then
    echo "moe-ids-triton: model repository ${repository} does not exist" >&2
    exit 66
fi

restricted="model-repository,shared-memory,trace,logging:admin-key=${key}"

exec "${TRITONSERVER:-tritonserver}" \
    --model-repository="${repository}" \
    --model-control-mode=none \
    --strict-readiness=true \
    --disable-auto-complete-config \
    --exit-on-error=true \
    --exit-timeout-secs=30 \
    --http-restricted-api="${restricted}" \
    --grpc-restricted-protocol="${restricted}" \
    --allow-metrics=true \
    --allow-gpu-metrics=true \
    --allow-cpu-metrics=true \
    --metrics-interval-ms=2000 \
    --metrics-config=summary_latencies=true \
    --metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001 \
    --log-format=ISO8601 \
    --log-verbose=0 \
    "$@"
