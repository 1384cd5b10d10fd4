"""lists.allow_international: whether a list accepts local parts that mix scripts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 14:20:00

A local part that mixes scripts (a Cyrillic letter among Latin ones) is how a look-alike of someone else's address
is made, so lists refuse it unless they are meant for international addresses. Existing lists start refusing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch_op:
        batch_op.add_column(sa.Column("allow_international", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch_op:
        batch_op.drop_column("allow_international")
