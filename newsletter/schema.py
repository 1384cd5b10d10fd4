"""Imports every package's models so that Base.metadata describes the whole database (Alembic and tests use it)."""

from mailer import models as mailer_models
from mailer.db import Base
from newsletter import models as newsletter_models
from subscribers import models as subscriber_models
from worker import models as worker_models

metadata = Base.metadata
__all__ = ["mailer_models", "metadata", "newsletter_models", "subscriber_models", "worker_models"]
