"""lists: language and brand (name, logo, accent colour, footer address); sends: the language of the parts frozen for the list

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 14:00:00

Existing lists keep reading as before: English, the service-wide identity (every brand field empty).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("language", sa.String(length=35), server_default="en", nullable=False))
        batch.add_column(sa.Column("brand_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("logo_url", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("logo_image", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("logo_type", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("logo_digest", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("accent_colour", sa.String(length=7), nullable=True))
        batch.add_column(sa.Column("postal_address", sa.String(length=500), nullable=True))
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("language", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("lists") as batch:
        for name in ("postal_address", "accent_colour", "logo_digest", "logo_type", "logo_image", "logo_url",
                     "brand_name", "language"):
            batch.drop_column(name)
