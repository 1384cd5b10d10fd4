"""list_fields: custom fields of a list (name, type, options, default, editable by the subscriber, position)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25 16:45:00

Values stay where they were, in subscribers.attributes: existing lists simply have no definitions until one is
added (or a CSV import names a column).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "list_fields",
        sa.Column("id", BigId, nullable=False),
        sa.Column("list_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("default", sa.JSON(), nullable=True),
        sa.Column("subscriber_editable", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_list_fields_list_id_lists"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_fields")),
        sa.UniqueConstraint("list_id", "name", name=op.f("uq_list_fields_list_id_name")),
    )


def downgrade() -> None:
    op.drop_table("list_fields")
