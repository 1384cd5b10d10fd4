FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mailer mailer
COPY subscribers subscribers
COPY worker worker
COPY newsletter newsletter
COPY templates templates
COPY migrations migrations
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["newsletter", "serve", "--host", "0.0.0.0"]
