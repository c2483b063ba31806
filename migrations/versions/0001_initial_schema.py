"""Initial schema: campaigns, leads, call attempts and events, do-not-call,
supervisor commands, AMI connection stats.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 19:48:02.082279
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# JSON documents: jsonb on PostgreSQL, JSON text on SQLite.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('ami_connection_stats',
    sa.Column('engine_id', sa.String(length=100), nullable=False),
    sa.Column('server', sa.String(length=100), nullable=False),
    sa.Column('connection', sa.String(length=100), nullable=False),
    sa.Column('originates_sent', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('reconnects', sa.Integer(), nullable=False),
    sa.Column('rate_cap', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('engine_id', 'server', 'connection', name=op.f('pk_ami_connection_stats'))
    )
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('dial_ratio', sa.Float(), nullable=False),
    sa.Column('max_dial_level', sa.Float(), nullable=False),
    sa.Column('abandon_target', sa.Float(), nullable=False),
    sa.Column('channel', sa.String(length=255), nullable=False),
    sa.Column('context', sa.String(length=80), nullable=False),
    sa.Column('exten', sa.String(length=80), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=80), nullable=True),
    sa.Column('caller_id', sa.String(length=255), nullable=True),
    sa.Column('ring_timeout', sa.Integer(), nullable=False),
    sa.Column('calling_window_start', sa.Time(), nullable=False),
    sa.Column('calling_window_end', sa.Time(), nullable=False),
    sa.Column('calling_days', JSON_TYPE, nullable=False),
    sa.Column('holidays', JSON_TYPE, nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('retry_delays', JSON_TYPE, nullable=False),
    sa.Column('max_concurrent', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("mode IN ('progressive', 'predictive', 'unattended')", name=op.f('ck_campaigns_mode')),
    sa.CheckConstraint("state IN ('stopped', 'running', 'paused', 'stopping', 'done')", name=op.f('ck_campaigns_state')),
    sa.CheckConstraint('abandon_target > 0 AND abandon_target < 1', name=op.f('ck_campaigns_abandon_target')),
    sa.CheckConstraint('max_attempts >= 1', name=op.f('ck_campaigns_max_attempts')),
    sa.CheckConstraint('max_concurrent >= 1', name=op.f('ck_campaigns_max_concurrent')),
    sa.CheckConstraint('ring_timeout >= 15', name=op.f('ck_campaigns_ring_timeout')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('name', name=op.f('uq_campaigns_name'))
    )
    op.create_table('dnc_numbers',
    sa.Column('phone_e164', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('added_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('phone_e164', name=op.f('pk_dnc_numbers'))
    )
    op.create_table('leads',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('phone_e164', sa.String(length=16), nullable=False),
    sa.Column('first_name', sa.Text(), nullable=True),
    sa.Column('last_name', sa.Text(), nullable=True),
    sa.Column('timezone', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('postal_code', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('last_disposition', sa.String(length=16), nullable=True),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.Column('custom', JSON_TYPE, nullable=True),
    sa.Column('source_file', sa.Text(), nullable=True),
    sa.Column('source_line', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(next_attempt_at IS NULL) = (state NOT IN ('new', 'retry'))", name=op.f('ck_leads_next_attempt_at')),
    sa.CheckConstraint("last_disposition IS NULL OR last_disposition IN ('connected', 'dropped', 'no_answer', 'busy', 'congestion', 'invalid_number', 'failed', 'unknown')", name=op.f('ck_leads_last_disposition')),
    sa.CheckConstraint("state IN ('new', 'retry', 'claimed', 'dialing', 'done', 'exhausted', 'dnc')", name=op.f('ck_leads_state')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_leads_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_leads')),
    sa.UniqueConstraint('campaign_id', 'phone_e164', name=op.f('uq_leads_campaign_id_phone_e164'))
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(
            'ix_leads_hopper',
            ['campaign_id', 'timezone', 'next_attempt_at', sa.literal_column('priority DESC')],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f('ix_leads_lease_expires_at'), ['lease_expires_at'], unique=False,
            sqlite_where=sa.text('lease_expires_at IS NOT NULL'),
            postgresql_where=sa.text('lease_expires_at IS NOT NULL'),
        )

    op.create_table('supervisor_commands',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('command', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('issued_by', sa.String(length=255), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('applied_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("command IN ('start', 'pause', 'resume', 'stop')", name=op.f('ck_supervisor_commands_command')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_supervisor_commands_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_supervisor_commands'))
    )
    with op.batch_alter_table('supervisor_commands', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_supervisor_commands_campaign_id_applied_at'), ['campaign_id', 'applied_at'], unique=False)

    op.create_table('call_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('phone_e164', sa.String(length=16), nullable=False),
    sa.Column('attempt_no', sa.Integer(), nullable=False),
    sa.Column('action_id', sa.String(length=64), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('other_channel_id', sa.String(length=64), nullable=True),
    sa.Column('engine_id', sa.String(length=100), nullable=False),
    sa.Column('server', sa.String(length=100), nullable=False),
    sa.Column('connection', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('originated_at', sa.DateTime(), nullable=True),
    sa.Column('ringing_at', sa.DateTime(), nullable=True),
    sa.Column('answered_at', sa.DateTime(), nullable=True),
    sa.Column('queue_joined_at', sa.DateTime(), nullable=True),
    sa.Column('connected_at', sa.DateTime(), nullable=True),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('disposition', sa.String(length=16), nullable=True),
    sa.Column('cause', sa.Integer(), nullable=True),
    sa.Column('cause_txt', sa.String(length=100), nullable=True),
    sa.Column('originate_reason', sa.Integer(), nullable=True),
    sa.Column('uniqueid', sa.String(length=64), nullable=True),
    sa.Column('agent', sa.String(length=100), nullable=True),
    sa.Column('time_to_agent', sa.Float(), nullable=True),
    sa.CheckConstraint("disposition IS NULL OR disposition IN ('connected', 'dropped', 'no_answer', 'busy', 'congestion', 'invalid_number', 'failed', 'unknown')", name=op.f('ck_call_attempts_disposition')),
    sa.CheckConstraint("state IN ('queued', 'originated', 'ringing', 'answered', 'connected', 'ended')", name=op.f('ck_call_attempts_state')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_call_attempts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_call_attempts_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_attempts')),
    sa.UniqueConstraint('action_id', name=op.f('uq_call_attempts_action_id')),
    sa.UniqueConstraint('channel_id', name=op.f('uq_call_attempts_channel_id'))
    )
    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_attempts_campaign_id_disposition'), ['campaign_id', 'disposition'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_attempts_campaign_id_ended_at'), ['campaign_id', 'ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_attempts_engine_id_ended_at'), ['engine_id', 'ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_attempts_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_attempts_phone_e164_ended_at'), ['phone_e164', 'ended_at'], unique=False)

    op.create_table('call_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('data', JSON_TYPE, nullable=False),
    sa.ForeignKeyConstraint(['attempt_id'], ['call_attempts.id'], name=op.f('fk_call_events_attempt_id_call_attempts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_events'))
    )
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_events_attempt_id'), ['attempt_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_events_attempt_id'))

    op.drop_table('call_events')
    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_attempts_phone_e164_ended_at'))
        batch_op.drop_index(batch_op.f('ix_call_attempts_lead_id'))
        batch_op.drop_index(batch_op.f('ix_call_attempts_engine_id_ended_at'))
        batch_op.drop_index(batch_op.f('ix_call_attempts_campaign_id_ended_at'))
        batch_op.drop_index(batch_op.f('ix_call_attempts_campaign_id_disposition'))

    op.drop_table('call_attempts')
    with op.batch_alter_table('supervisor_commands', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_supervisor_commands_campaign_id_applied_at'))

    op.drop_table('supervisor_commands')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_lease_expires_at'))
        batch_op.drop_index('ix_leads_hopper')

    op.drop_table('leads')
    op.drop_table('dnc_numbers')
    op.drop_table('campaigns')
    op.drop_table('ami_connection_stats')
