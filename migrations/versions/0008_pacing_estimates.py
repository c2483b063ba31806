"""Pacing: learnt estimates saved per campaign, and the decisions log.

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('pacing_estimates',
    sa.Column('campaign_id', BIG_ID, nullable=False),
    sa.Column('engine_id', sa.String(length=100), nullable=False),
    sa.Column('saved_at', sa.DateTime(), nullable=False),
    sa.Column('data', JSON_TYPE, nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_pacing_estimates_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_pacing_estimates'))
    )
    op.create_table('pacing_decisions',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('campaign_id', BIG_ID, nullable=False),
    sa.Column('engine_id', sa.String(length=100), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('agents_logged_in', sa.Integer(), nullable=False),
    sa.Column('agents_free', sa.Integer(), nullable=False),
    sa.Column('agents_expected', sa.Float(), nullable=False),
    sa.Column('ringing', sa.Integer(), nullable=False),
    sa.Column('waiting', sa.Integer(), nullable=False),
    sa.Column('in_flight', sa.Integer(), nullable=False),
    sa.Column('other_engines_ringing', sa.Integer(), nullable=False),
    sa.Column('engines', sa.Integer(), nullable=False),
    sa.Column('answer_rate', sa.Float(), nullable=False),
    sa.Column('abandon_rate', sa.Float(), nullable=False),
    sa.Column('hour_abandon_rate', sa.Float(), nullable=False),
    sa.Column('allowed_drop', sa.Float(), nullable=False),
    sa.Column('dial_level', sa.Float(), nullable=False),
    sa.Column('calls_placed', sa.Integer(), nullable=False),
    sa.Column('calls_cut', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_pacing_decisions_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pacing_decisions'))
    )
    op.create_index('ix_pacing_decisions_campaign_at', 'pacing_decisions', ['campaign_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_pacing_decisions_campaign_at', table_name='pacing_decisions')
    op.drop_table('pacing_decisions')
    op.drop_table('pacing_estimates')
