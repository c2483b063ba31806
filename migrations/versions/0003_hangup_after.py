"""Hang-ups by pacing: campaigns.hangup_after (seconds of ringing after which
a call may be hung up) and call_attempts.hangup_at (when one was sent).

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

CHECK = 'hangup_after = 0 OR hangup_after >= 15'


def _sqlite() -> bool:
    return op.get_context().dialect.name == 'sqlite'


# On SQLite the columns are added and dropped with ALTER TABLE in place: a
# batch rebuild would drop and recreate the tables, and with foreign keys on
# that deletes every lead and attempt of every campaign (ON DELETE CASCADE).


def upgrade() -> None:
    if _sqlite():
        op.execute(
            'ALTER TABLE campaigns ADD COLUMN hangup_after INTEGER DEFAULT 0 NOT NULL'
            f' CONSTRAINT ck_campaigns_hangup_after CHECK ({CHECK})'
        )
        op.execute('ALTER TABLE call_attempts ADD COLUMN hangup_at DATETIME')
    else:
        op.add_column('campaigns', sa.Column('hangup_after', sa.Integer(), server_default=sa.text('0'), nullable=False))
        op.create_check_constraint(op.f('ck_campaigns_hangup_after'), 'campaigns', CHECK)
        op.add_column('call_attempts', sa.Column('hangup_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    if _sqlite():
        op.execute('ALTER TABLE call_attempts DROP COLUMN hangup_at')
        op.execute('ALTER TABLE campaigns DROP COLUMN hangup_after')
    else:
        op.drop_column('call_attempts', 'hangup_at')
        op.drop_constraint(op.f('ck_campaigns_hangup_after'), 'campaigns', type_='check')
        op.drop_column('campaigns', 'hangup_after')
