"""deliveries: one unique index (subscriber_id, send_id) instead of three indexes on those columns and message ids

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 18:50:00

Every move of a ledger row (claimed, then marked) is an UPDATE that writes a new entry into each of the table's
indexes, so each index costs every recipient twice (bench/batch_cpu.py: two non-HOT updates per recipient). Three
of them answered overlapping questions:
- the unique (send_id, subscriber_id) keeps a plan from listing anyone twice; turned around to
  (subscriber_id, send_id) it does that and also serves "this subscriber's deliveries" (their page in the admin,
  bounces, the handover wait), so the separate index on subscriber_id goes;
- the partial index on provider_message_id served only the fallback that matches a provider event without our
  ids by message id and address: the address finds the subscriber and the unique index their few deliveries.
Queries by send alone use ix_deliveries_send_status_id, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_MESSAGE_ID = "provider_message_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.create_unique_constraint(op.f("uq_deliveries_subscriber_id_send_id"), ["subscriber_id", "send_id"])
        batch_op.drop_constraint(op.f("uq_deliveries_send_id_subscriber_id"), type_="unique")
        batch_op.drop_index(op.f("ix_deliveries_subscriber_id"))
        batch_op.drop_index("ix_deliveries_provider_message_id")


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.create_index("ix_deliveries_provider_message_id", ["provider_message_id"],
                              postgresql_where=sa.text(HAS_MESSAGE_ID), sqlite_where=sa.text(HAS_MESSAGE_ID))
        batch_op.create_index(op.f("ix_deliveries_subscriber_id"), ["subscriber_id"], unique=False)
        batch_op.create_unique_constraint(op.f("uq_deliveries_send_id_subscriber_id"), ["send_id", "subscriber_id"])
        batch_op.drop_constraint(op.f("uq_deliveries_subscriber_id_send_id"), type_="unique")
