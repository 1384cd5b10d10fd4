"""send_batches, and the delivery status 'planned': a batch of a send's first pass is claimed and marked as one row

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 02:00:00

Before, a batch that went out wrote each of its recipients' rows twice (claimed, then marked sent), each write an
entry in every index of the ledger: two row writes per recipient on the database every worker of every host shares.
Now the plan writes its rows as `planned` and cuts them into `send_batches` rows; a planned row's status is its
batch's (open: pending, claimed: sending, done: sent), and only exceptions are written per recipient
(worker/batches.py). Existing rows keep their own statuses, which mean what they meant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CLAIMED_ONLY = "state = 'claimed'"
OLD = ("pending", "sending", "sent", "failed", "skipped")
NEW = ("planned", *OLD)


def _status(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(*values, name="delivery_status", native_enum=False, create_constraint=True, length=32)


def _check(values: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def _set_statuses(old: Sequence[str], new: Sequence[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_deliveries_delivery_status"), "deliveries", type_="check")
        op.create_check_constraint(op.f("ck_deliveries_delivery_status"), "deliveries", _check(new))
        return
    with op.batch_alter_table("deliveries") as batch_op:  # SQLite: the table is copied with the new CHECK
        batch_op.alter_column("status", existing_type=_status(old), type_=_status(new), existing_nullable=False)


def upgrade() -> None:
    _set_statuses(OLD, NEW)
    op.create_table(
        "send_batches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("send_id", BIG_ID, nullable=False),
        sa.Column("first_id", BIG_ID, nullable=False),
        sa.Column("last_id", BIG_ID, nullable=False),
        sa.Column("state", sa.Enum("open", "claimed", "done", name="batch_state", native_enum=False,
                                   create_constraint=True, length=32), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], name=op.f("fk_send_batches_send_id_sends"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_batches")),
        sa.UniqueConstraint("send_id", "first_id", name=op.f("uq_send_batches_send_id_first_id")),
    )
    op.create_index("ix_send_batches_claimed", "send_batches", ["claimed_at"],
                    postgresql_where=sa.text(CLAIMED_ONLY), sqlite_where=sa.text(CLAIMED_ONLY))


_BATCH_OF_ROW = ("(SELECT b.{column} FROM send_batches b WHERE b.send_id = deliveries.send_id"
                 " AND b.first_id <= deliveries.id ORDER BY b.first_id DESC LIMIT 1)")


def downgrade() -> None:
    """Planned rows take their batch's outcome as their own before the batches go; a claimed batch's rows go back
    to pending (run it with the workers stopped: what they held is sent again, as after a lease)."""
    state, sent_at, message_id = (_BATCH_OF_ROW.format(column=c) for c in ("state", "sent_at", "provider_message_id"))
    op.execute(f"UPDATE deliveries SET sent_at = {sent_at}, provider_message_id = {message_id},"
               f" status = CASE {state} WHEN 'done' THEN 'sent' ELSE 'pending' END WHERE status = 'planned'")
    op.drop_index("ix_send_batches_claimed", table_name="send_batches")
    op.drop_table("send_batches")
    _set_statuses(NEW, OLD)
