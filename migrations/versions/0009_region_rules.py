"""Rules per region: each lead's rules region (also in the hopper index, so
the claim filters on it from the index), and the operators' region rules table.

Existing NANP leads get their region from their number's area code (the
state or province; the country for toll-free numbers); other leads keep NULL
(only their campaign's rules) until loaded again.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_context().dialect.name == 'sqlite'


def _backfill() -> None:
    from dialer.leads.phones import _nanp_regions

    op.execute('CREATE TEMPORARY TABLE dialer_region_map (prefix VARCHAR(5) PRIMARY KEY, region TEXT)')
    mapping = sa.table('dialer_region_map', sa.column('prefix', sa.String), sa.column('region', sa.Text))
    op.bulk_insert(mapping, [{'prefix': '+1' + npa, 'region': region}
                             for npa, region in sorted(_nanp_regions().items())])
    op.execute(
        "UPDATE leads SET rules_region = (SELECT m.region FROM dialer_region_map m"
        " WHERE m.prefix = substr(leads.phone_e164, 1, 5)) WHERE phone_e164 LIKE '+1%'"
    )
    op.execute('DROP TABLE dialer_region_map')


def upgrade() -> None:
    # On SQLite the column is added with ALTER TABLE in place: a batch rebuild
    # would recreate the table, and with foreign keys on that deletes the
    # leads' attempts (ON DELETE CASCADE).
    if _sqlite():
        op.execute('ALTER TABLE leads ADD COLUMN rules_region TEXT')
    else:
        op.add_column('leads', sa.Column('rules_region', sa.Text(), nullable=True))
    _backfill()
    op.drop_index('ix_leads_hopper', table_name='leads')
    op.create_index(
        'ix_leads_hopper', 'leads',
        ['campaign_id', 'timezone', 'next_attempt_at', sa.literal_column('priority DESC'), 'rules_region'],
        unique=False,
    )
    op.create_table('region_rules',
    sa.Column('region', sa.String(length=16), nullable=False),
    sa.Column('window_start', sa.Time(), nullable=True),
    sa.Column('window_end', sa.Time(), nullable=True),
    sa.Column('max_calls_24h', sa.Integer(), nullable=True),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('max_calls_24h IS NULL OR max_calls_24h >= 1', name=op.f('ck_region_rules_max_calls_24h')),
    sa.CheckConstraint('window_start IS NULL OR window_end IS NULL OR window_start < window_end',
                       name=op.f('ck_region_rules_window')),
    sa.PrimaryKeyConstraint('region', name=op.f('pk_region_rules'))
    )


def downgrade() -> None:
    op.drop_table('region_rules')
    op.drop_index('ix_leads_hopper', table_name='leads')
    op.create_index(
        'ix_leads_hopper', 'leads',
        ['campaign_id', 'timezone', 'next_attempt_at', sa.literal_column('priority DESC')],
        unique=False,
    )
    if _sqlite():
        op.execute('ALTER TABLE leads DROP COLUMN rules_region')
    else:
        op.drop_column('leads', 'rules_region')
