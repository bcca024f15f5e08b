# The pipeline image: the init, stream and live services of docker-compose.yml run it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# dependencies first (this layer is rebuilt only when the package changes)
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN pip install --no-cache-dir .
# the demo EKG that the init service loads and the live service replays
COPY datasets/synthetic_ekg.csv datasets/synthetic_ekg_anomalies.csv ./datasets/
# an unprivileged user; named volumes mounted on these folders start out owned by it
RUN useradd --system --uid 10001 --create-home pipeline \
    && mkdir -p /var/lib/pipeline/models /var/lib/pipeline/checkpoints \
    && chown -R pipeline /var/lib/pipeline
USER pipeline
CMD ["python", "-m", "pipeline.stream", "--help"]
