"""sends.figures, sends.compacted_at: a finished send's figures kept after its per-recipient rows are removed

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 17:00:00

A sent issue's ledger is one row per recipient for ever: a weekly newsletter to 1M people adds 52M rows a year that
nothing reads after the bounces and the clicks have settled. `newsletter sends compact` (and beat, when
NEWSLETTER_LEDGER_KEEP_DAYS is set) stores the send's counters and engagement report on the send, then deletes its
rows; readers of a compacted send read the stored figures.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("figures", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("compacted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("compacted_at")
        batch.drop_column("figures")
