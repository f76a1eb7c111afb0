# The application image: web (gunicorn), relay and consumer run from it.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEALTHCARE_VAR_DIR=/app/var

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files for the admin, served by WhiteNoise under gunicorn.
# (throwaway keys: collectstatic signs nothing, and no key file is left in the image)
RUN DJANGO_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))') \
    JWT_SIGNING_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))') \
    DJANGO_DEBUG=1 python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app app \
    && chown -R app /app/var

USER app
EXPOSE 8000 9101 9102
CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py", "healthcare.wsgi:application"]
