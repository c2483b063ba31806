"""Estimated values: call_attempts.estimated names the columns of an attempt
that no engine observed (a call that ended while no engine followed it and
that Asterisk kept no record of), so that they are never presented as seen.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_context().dialect.name == 'sqlite'


# On SQLite the column is added and dropped with ALTER TABLE in place: a batch
# rebuild would recreate the table, and with foreign keys on that deletes the
# attempts' call events (ON DELETE CASCADE).


def upgrade() -> None:
    if _sqlite():
        op.execute('ALTER TABLE call_attempts ADD COLUMN estimated VARCHAR(100)')
    else:
        op.add_column('call_attempts', sa.Column('estimated', sa.String(length=100), nullable=True))


def downgrade() -> None:
    if _sqlite():
        op.execute('ALTER TABLE call_attempts DROP COLUMN estimated')
    else:
        op.drop_column('call_attempts', 'estimated')
