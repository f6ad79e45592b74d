# The MLflow tracking server: MLflow with its basic-auth app, Postgres (psycopg) and S3 artifacts (boto3).
FROM python:3.11-slim-bookworm

RUN pip install --no-cache-dir "mlflow[auth]==3.17.2" "psycopg[binary]==3.3.9" "boto3==1.44.5" \
 && useradd --create-home --uid 1000 mlflow \
 && mkdir /mlflow-auth && chown mlflow:mlflow /mlflow-auth
COPY docker/healthcheck.py /usr/local/bin/fineforge-healthcheck
COPY infra/mlflow-auth.ini /etc/mlflow/basic_auth.ini
ENV MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini \
    MLFLOW_DISABLE_TELEMETRY=true
USER mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--help"]
