"""deliveries: partial indexes for in-flight rows (lease sweeper) and sent rows (provider message id)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:20:00

Every index on the ledger is paid for on each of a row's moves (pending -> sending -> sent). The lease sweeper only
looks for rows in flight and events only look up rows that have a provider message id, so those two indexes need
no entry for the others: fewer index writes per recipient on the hottest table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENDING_ONLY = "status = 'sending'"
HAS_MESSAGE_ID = "provider_message_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index("ix_deliveries_status_claimed")
        batch_op.drop_index("ix_deliveries_provider_message_id")
        batch_op.create_index("ix_deliveries_sending_claimed", ["claimed_at"],
                              postgresql_where=sa.text(SENDING_ONLY), sqlite_where=sa.text(SENDING_ONLY))
        batch_op.create_index("ix_deliveries_provider_message_id", ["provider_message_id"],
                              postgresql_where=sa.text(HAS_MESSAGE_ID), sqlite_where=sa.text(HAS_MESSAGE_ID))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index("ix_deliveries_sending_claimed")
        batch_op.drop_index("ix_deliveries_provider_message_id")
        batch_op.create_index("ix_deliveries_status_claimed", ["status", "claimed_at"])
        batch_op.create_index("ix_deliveries_provider_message_id", ["provider_message_id"])
