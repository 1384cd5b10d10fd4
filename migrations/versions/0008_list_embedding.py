"""lists: embeddable sign-up (allowed origins, thank-you URL) and private archives

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 14:00:00

Existing lists become embeddable (the admin already offered them a snippet to embed) and keep a public archive
(what they had until now).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch_op:
        batch_op.add_column(sa.Column("embeddable", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("embed_origins", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("thank_you_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("archive_private", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch_op:
        batch_op.drop_column("archive_private")
        batch_op.drop_column("thank_you_url")
        batch_op.drop_column("embed_origins")
        batch_op.drop_column("embeddable")
