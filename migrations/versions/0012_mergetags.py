"""sends.merge_tags: the merge-tag slots of a send's frozen parts

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 17:00:00

An issue may hold merge tags ({{ subscriber.name }}, {{ subscriber.fields.city | default("...") }}); the rendered
parts frozen on a send hold numbered slots for them, and this column says what each slot is, frozen with the parts
so a later edit of the issue cannot change what a running send fills in. NULL: no tags (every send before this).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        batch_op.add_column(sa.Column("merge_tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        batch_op.drop_column("merge_tags")
