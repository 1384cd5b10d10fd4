"""The FastAPI app: public subscriber pages, the admin, the JSON API and provider webhooks."""
