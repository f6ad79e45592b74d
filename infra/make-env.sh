#!/usr/bin/env sh
# Write infra/.env (or $FINEFORGE_ENV_FILE): the credentials of the compose stack and of the Kubernetes secrets
# (README.md). Every secret is random and new; the file is never committed (.gitignore). An existing file is
# kept unless --force is given (the databases keep the passwords they were created with).
set -eu
cd "$(dirname "$0")"
OUT="${FINEFORGE_ENV_FILE:-.env}"
if [ -e "$OUT" ] && [ "${1:-}" != "--force" ]; then
  echo "$OUT exists; keeping it (infra/make-env.sh --force writes new secrets)" >&2
  exit 0
fi
secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }  # 48 hex characters: safe in URLs and shells
umask 077
cat > "$OUT" <<ENV
# Written by infra/make-env.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Secrets: never commit or share this file.
# Address the published ports listen on; 127.0.0.1 keeps the stack closed to the network.
FINEFORGE_BIND=127.0.0.1
POSTGRES_USER=fineforge
POSTGRES_PASSWORD=$(secret)
PREFECT_AUTH_USER=admin
PREFECT_AUTH_PASSWORD=$(secret)
MLFLOW_ADMIN_USER=admin
MLFLOW_ADMIN_PASSWORD=$(secret)
MLFLOW_SECRET_KEY=$(secret)
S3_ACCESS_KEY=fineforge
S3_SECRET_KEY=$(secret)
SPARK_AUTH_SECRET=$(secret)
ENV
echo "wrote $OUT (mode 600)"
