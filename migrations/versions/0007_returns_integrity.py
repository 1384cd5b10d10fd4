"""what comes back: rejected provider events keep their error, unmatched bounces wait for a person, and per-send
outcome counters for auto-pause

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 13:40:00

A malformed or unappliable provider event is marked with its error instead of blocking the ones after it. A DSN
without a genuine VERP address suppresses nobody and is kept in `unmatched_bounces`. Auto-pause reads counters of
outcomes known per send and 10-second bucket (`send_outcomes`), not a scan of the ledger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("provider_events") as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    op.create_table(
        "unmatched_bounces",
        sa.Column("id", BigId, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("why", sa.String(length=500), nullable=False),
        sa.Column("envelope_to", sa.String(length=1000), nullable=False),
        sa.Column("sender", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("named", sa.JSON(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unmatched_bounces")),
        sa.UniqueConstraint("digest", name=op.f("uq_unmatched_bounces_digest")),
    )
    op.create_table(
        "send_outcomes",
        sa.Column("send_id", BigId, nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcomes", sa.Integer(), nullable=False),
        sa.Column("hard_bounces", sa.Integer(), nullable=False),
        sa.Column("complaints", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], name=op.f("fk_send_outcomes_send_id_sends"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("send_id", "bucket", name=op.f("pk_send_outcomes")),
    )


def downgrade() -> None:
    op.drop_table("send_outcomes")
    op.drop_table("unmatched_bounces")
    with op.batch_alter_table("provider_events") as batch_op:
        batch_op.drop_column("error")
