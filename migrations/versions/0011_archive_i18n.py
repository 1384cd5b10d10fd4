"""sends.web_html: the archive copy of a send, frozen with the rest of its parts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 16:45:00

The public archive showed the issue rendered for no list (the service's language and brand), so a German list's
issue had an English footer and date on the web. A send now keeps the web copy it rendered for its list (language,
brand), and the archive serves that. Sends planned before this revision have none; the archive falls back to the
issue's own copy for them, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        batch_op.add_column(sa.Column("web_html", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        batch_op.drop_column("web_html")
