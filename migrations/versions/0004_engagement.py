"""engagement: tracked links per send, raw opens and clicks, per-list and per-subscriber tracking settings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 14:00:00

Opens and clicks are first recorded raw (one row a request, the client network truncated), classified as a person
or a machine once the few seconds that tell them apart have passed, and then counted onto the delivery, the link and
the subscriber. The counters are kept for ever; raw rows only for NEWSLETTER_ENGAGEMENT_RAW_DAYS.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch_op:
        batch_op.add_column(sa.Column("track_clicks", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("track_opens", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(sa.Column("tracking_opt_out", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("last_human_open_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_human_click_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("machine_clicks", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("sends") as batch_op:
        batch_op.add_column(sa.Column("track_clicks", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("track_opens", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "send_links",
        sa.Column("id", BigId, nullable=False),
        sa.Column("send_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("human", sa.Integer(), nullable=False),
        sa.Column("machine", sa.Integer(), nullable=False),
        sa.Column("unique_human", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], name=op.f("fk_send_links_send_id_sends"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_links")),
        sa.UniqueConstraint("send_id", "position", name=op.f("uq_send_links_send_id_position")),
    )
    op.create_table(
        "engagement_hits",
        sa.Column("id", BigId, nullable=False),
        sa.Column("send_id", BigId, nullable=False),
        sa.Column("delivery_id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement_hits")),
    )
    op.create_index("ix_engagement_hits_unclassified", "engagement_hits", ["at"],
                    postgresql_where=sa.text("verdict IS NULL"), sqlite_where=sa.text("verdict IS NULL"))
    op.create_index("ix_engagement_hits_delivery_at", "engagement_hits", ["delivery_id", "at"])
    op.create_index("ix_engagement_hits_send_at", "engagement_hits", ["send_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_engagement_hits_send_at", table_name="engagement_hits")
    op.drop_index("ix_engagement_hits_delivery_at", table_name="engagement_hits")
    op.drop_index("ix_engagement_hits_unclassified", table_name="engagement_hits")
    op.drop_table("engagement_hits")
    op.drop_table("send_links")
    with op.batch_alter_table("sends") as batch_op:
        batch_op.drop_column("track_opens")
        batch_op.drop_column("track_clicks")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("machine_clicks")
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("last_human_click_at")
        batch_op.drop_column("last_human_open_at")
        batch_op.drop_column("tracking_opt_out")
    with op.batch_alter_table("lists") as batch_op:
        batch_op.drop_column("track_opens")
        batch_op.drop_column("track_clicks")
