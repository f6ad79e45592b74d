#!/usr/bin/env sh
# Create the Kubernetes secrets from infra/.env (written by infra/make-env.sh); nothing secret is committed.
#   fineforge-credentials  every variable of infra/.env (the pods take the keys they need)
#   prefect-basic-auth     auth-string = user:password of the Prefect server (the Helm charts' key)
#   prefect-database       connection-string of the Prefect server's Postgres (host: $PREFECT_DB_HOST)
set -eu
cd "$(dirname "$0")/.."
[ -f .env ] || { echo "infra/.env missing: run infra/make-env.sh first" >&2; exit 1; }
set -a; . ./.env; set +a
NS=fineforge
kubectl -n "$NS" create secret generic fineforge-credentials --from-env-file=.env
kubectl -n "$NS" create secret generic prefect-basic-auth --from-literal=auth-string="$PREFECT_AUTH_USER:$PREFECT_AUTH_PASSWORD"
kubectl -n "$NS" create secret generic prefect-database --from-literal=connection-string="postgresql+asyncpg://$POSTGRES_USER:$POSTGRES_PASSWORD@${PREFECT_DB_HOST:-postgres}:5432/prefect"
