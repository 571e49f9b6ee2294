# One image for both processes:
#   docker run IMAGE                  -> the API on port 8000
#   docker run IMAGE consume          -> the Kafka consumer
# Configure it with CITIZEN_CONTEXT_* environment variables (see README).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY events ./events
COPY context ./context
COPY models ./models
COPY ops ./ops
COPY bench ./bench
# Wheels of the project and every dependency, so the runtime stage needs no compiler and no cache.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Production settings: the development secrets, pseudonym key, token issuer and erasure signing key are
# refused, so the container starts only once real ones are configured (CITIZEN_CONTEXT_SECURITY_*,
# CITIZEN_CONTEXT_SIGNING_*).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CITIZEN_CONTEXT_SECURITY_ENVIRONMENT=production \
    CITIZEN_CONTEXT_API_HOST=0.0.0.0 \
    CITIZEN_CONTEXT_CONSUMER_HEALTH_HOST=0.0.0.0
RUN useradd --system --uid 10001 --home-dir /app --create-home citizen
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER citizen
WORKDIR /app
EXPOSE 8000 8081
ENTRYPOINT ["citizen-context"]
CMD ["api"]
