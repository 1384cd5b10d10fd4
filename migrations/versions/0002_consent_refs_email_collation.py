"""consent events keep plain references; subscriber addresses in byte order on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 13:40:00

The consent trail is append-only proof: its subscriber and list ids must never be rewritten by ON DELETE SET NULL,
and the two foreign-key checks per row were a quarter of a bulk import's database time. Normalised addresses need
no linguistic collation; byte order makes the unique index cheaper and lets it serve prefix searches.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_events") as batch_op:
        batch_op.drop_constraint("fk_consent_events_list_id_lists", type_="foreignkey")
        batch_op.drop_constraint("fk_consent_events_subscriber_id_subscribers", type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("subscribers", "email", type_=sa.String(320, collation="C"),
                        existing_type=sa.String(320), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("subscribers", "email", type_=sa.String(320), existing_type=sa.String(320, collation="C"),
                        existing_nullable=False)
    with op.batch_alter_table("consent_events") as batch_op:
        batch_op.create_foreign_key("fk_consent_events_subscriber_id_subscribers", "subscribers",
                                    ["subscriber_id"], ["id"], ondelete="SET NULL")
        batch_op.create_foreign_key("fk_consent_events_list_id_lists", "lists", ["list_id"], ["id"],
                                    ondelete="SET NULL")
