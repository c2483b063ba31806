"""Engine status: the live figures of each running engine, for 'dialer status'.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('engine_status',
    sa.Column('engine_id', sa.String(length=100), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.Column('data', JSON_TYPE, nullable=False),
    sa.PrimaryKeyConstraint('engine_id', name=op.f('pk_engine_status'))
    )


def downgrade() -> None:
    op.drop_table('engine_status')
