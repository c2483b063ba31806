"""Live state: one row per engine and campaign, written at least four times a second.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('live_state',
    sa.Column('engine_id', sa.String(length=100), nullable=False),
    sa.Column('campaign_id', BIG_ID, nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.Column('data', JSON_TYPE, nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_live_state_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('engine_id', 'campaign_id', name=op.f('pk_live_state'))
    )


def downgrade() -> None:
    op.drop_table('live_state')
