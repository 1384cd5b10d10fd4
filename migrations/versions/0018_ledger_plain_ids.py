"""deliveries: send_id and subscriber_id without foreign keys

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 02:45:00

Planning a send writes a ledger row per recipient, and each row's two foreign-key checks (a row-locking lookup of
its send and of its subscriber) were 8.6 s of the 15.4 s a million-recipient plan took (auto_explain, 2026-12-07).
The constraints protect nothing the plan does not already guarantee: it reads both ids from existing rows in the
statement that writes them, under the send's row lock, and the service never deletes a send or a subscriber
(erasure blanks a person), so ON DELETE CASCADE never fired. As revision 0002 did for the consent trail.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(op.f("fk_deliveries_send_id_sends"), type_="foreignkey")
        batch_op.drop_constraint(op.f("fk_deliveries_subscriber_id_subscribers"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.create_foreign_key(op.f("fk_deliveries_send_id_sends"), "sends", ["send_id"], ["id"],
                                    ondelete="CASCADE")
        batch_op.create_foreign_key(op.f("fk_deliveries_subscriber_id_subscribers"), "subscribers",
                                    ["subscriber_id"], ["id"], ondelete="CASCADE")
