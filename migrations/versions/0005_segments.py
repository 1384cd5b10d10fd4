"""segments: saved filters on a list; a send may go to one, its expression frozen on the send

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", BigId, nullable=False),
        sa.Column("list_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_segments_list_id_lists"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("list_id", "name", name=op.f("uq_segments_list_id_name")),
    )
    with op.batch_alter_table("sends") as batch_op:
        batch_op.add_column(sa.Column("segment_id", BigId, nullable=True))
        batch_op.add_column(sa.Column("segment_expression", sa.Text(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_sends_segment_id_segments"), "segments", ["segment_id"], ["id"],
                                    ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sends_segment_id_segments"), type_="foreignkey")
        batch_op.drop_column("segment_expression")
        batch_op.drop_column("segment_id")
    op.drop_table("segments")
