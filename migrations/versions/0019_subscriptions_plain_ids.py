"""subscriptions: subscriber_id and list_id without foreign keys

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 04:30:00

A bulk import writes a subscription per row, and the row's two foreign-key checks (a row-locking lookup of its
list and of its subscriber) were 51 ms of the 185 ms the import statement took for 5,000 new addresses
(EXPLAIN ANALYZE, 2026-12-07). They protect nothing the writers do not already guarantee: every writer (sign-up,
import, admin, API) takes the subscriber id from the row it has just upserted and the list id from an existing
list, and the service deletes neither a subscriber (erasure blanks a person) nor a list, so ON DELETE CASCADE
never fired. As revisions 0002 (consent trail) and 0018 (ledger) did.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.drop_constraint(op.f("fk_subscriptions_list_id_lists"), type_="foreignkey")
        batch_op.drop_constraint(op.f("fk_subscriptions_subscriber_id_subscribers"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.create_foreign_key(op.f("fk_subscriptions_list_id_lists"), "lists", ["list_id"], ["id"],
                                    ondelete="CASCADE")
        batch_op.create_foreign_key(op.f("fk_subscriptions_subscriber_id_subscribers"), "subscribers",
                                    ["subscriber_id"], ["id"], ondelete="CASCADE")
