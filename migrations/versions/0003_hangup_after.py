"""Hang-ups by pacing: campaigns.hangup_after (seconds of ringing after which
a call may be hung up) and call_attempts.hangup_at (when one was asked).

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.add_column(sa.Column('hangup_after', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch.create_check_constraint('ck_campaigns_hangup_after', 'hangup_after = 0 OR hangup_after >= 15')
    with op.batch_alter_table('call_attempts') as batch:
        batch.add_column(sa.Column('hangup_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('call_attempts') as batch:
        batch.drop_column('hangup_at')
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_constraint('ck_campaigns_hangup_after', type_='check')
        batch.drop_column('hangup_after')
