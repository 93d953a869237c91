# The Airflow image docker-compose.yaml runs: the official apache/airflow:3.3.2 with this provider
# installed from the checkout, pinned by the project's constraints.txt (the same lock the tests run on).
#   docker compose build        (or: docker build -t airflow-gridaware:dev .)
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2
FROM ${AIRFLOW_IMAGE}

# Extras: dispatch to Kubernetes Jobs / AWS Batch, the store on PostgreSQL, the CeleryExecutor.
ARG GRIDAWARE_EXTRAS=kubernetes,aws,postgres,celery

COPY --chown=airflow:0 pyproject.toml README.md LICENSE NOTICE constraints.txt /opt/gridaware/src/
COPY --chown=airflow:0 airflow_provider_gridaware /opt/gridaware/src/airflow_provider_gridaware
COPY --chown=airflow:0 docs /opt/gridaware/src/docs

# apache-airflow stays at the image's version: the constraints pin everything else around it.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" "/opt/gridaware/src[${GRIDAWARE_EXTRAS}]" \
        --constraint /opt/gridaware/src/constraints.txt \
    && pip check
