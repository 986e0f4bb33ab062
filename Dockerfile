# Millrace production image: Django (ASGI via daphne) + Celery worker/beat.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Unprivileged runtime user; /data is the mount point of the shared "data" volume
# (a new named volume inherits this ownership from the image).
RUN groupadd --system --gid 1000 millrace \
 && useradd --system --uid 1000 --gid millrace --home-dir /app --shell /usr/sbin/nologin millrace \
 && mkdir -p /data \
 && chown millrace:millrace /data

# Dependencies first, so code changes do not invalidate this layer.
COPY requirements.lock /app/requirements.lock
RUN pip install --no-cache-dir -r /app/requirements.lock

# Code stays root-owned (read-only for the runtime user); writable state lives in /data.
COPY . /app

# Collect static files at build time. The SECRET_KEY here is a throwaway used only
# for this step; the real one is supplied at run time through the environment.
RUN SECRET_KEY=build-only-throwaway-value-not-a-real-secret DEBUG=false \
    python manage.py collectstatic --noinput

USER millrace

EXPOSE 8000

CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "portal.asgi:application"]
