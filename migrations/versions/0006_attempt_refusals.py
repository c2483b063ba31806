"""What Asterisk said to a refused Originate, and whether an attempt counted:
call_attempts.response_message and call_attempts.charged.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_context().dialect.name == 'sqlite'


# On SQLite the columns are added and dropped with ALTER TABLE in place: a batch
# rebuild would copy call_attempts, which may hold millions of rows.


def upgrade() -> None:
    if _sqlite():
        op.execute('ALTER TABLE call_attempts ADD COLUMN response_message VARCHAR(255)')
        op.execute('ALTER TABLE call_attempts ADD COLUMN charged BOOLEAN DEFAULT 1 NOT NULL')
    else:
        op.add_column('call_attempts', sa.Column('response_message', sa.String(length=255), nullable=True))
        op.add_column('call_attempts', sa.Column('charged', sa.Boolean(), server_default=sa.true(),
                                                 nullable=False))


def downgrade() -> None:
    if _sqlite():
        op.execute('ALTER TABLE call_attempts DROP COLUMN charged')
        op.execute('ALTER TABLE call_attempts DROP COLUMN response_message')
    else:
        op.drop_column('call_attempts', 'charged')
        op.drop_column('call_attempts', 'response_message')
