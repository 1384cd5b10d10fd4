"""welcome series: welcome_steps, sends.kind, subscriptions.welcome and an index on confirmation times

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25 17:00:00

A list may mail a series of issues to each new subscriber, each after its own delay from the confirmation. Every
step owns one long-lived send (kind 'welcome') whose ledger rows are added as delays pass. Existing subscriptions
get welcome = true, but a step only takes confirmations from its own creation on, so nobody already subscribed
is mailed by this revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="campaign", nullable=False))
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.add_column(sa.Column("welcome", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_index("ix_subscriptions_list_confirmed", "subscriptions", ["list_id", "confirmed_at"])
    op.create_table(
        "welcome_steps",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("list_id", BIG_ID, nullable=False),
        sa.Column("send_id", BIG_ID, nullable=False),
        sa.Column("delay_seconds", sa.Integer(), nullable=False),
        sa.Column("eligible_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("covered_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_welcome_steps_list_id_lists"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], name=op.f("fk_welcome_steps_send_id_sends"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_welcome_steps")),
        sa.UniqueConstraint("send_id", name=op.f("uq_welcome_steps_send_id")),
    )
    op.create_index(op.f("ix_welcome_steps_list_id"), "welcome_steps", ["list_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_welcome_steps_list_id"), table_name="welcome_steps")
    op.drop_table("welcome_steps")
    op.drop_index("ix_subscriptions_list_confirmed", table_name="subscriptions")
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.drop_column("welcome")
    with op.batch_alter_table("sends") as batch_op:
        batch_op.drop_column("kind")
