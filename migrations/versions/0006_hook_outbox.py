"""Event hooks: the transactional outbox ``hook_events``

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:00:00

A new table only; nothing existing changes, so the downgrade just drops it (with any
undelivered events).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'hook_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('event_id', sa.String(length=40), nullable=False),
        sa.Column('target', sa.String(length=16), nullable=False),
        sa.Column('resource_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('lease_holder', sa.String(length=64), nullable=True),
        sa.Column('lease_expires_ms', sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'abandoned')", name=op.f('ck_hook_events_status_known')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hook_events')),
    )
    op.create_index(
        'ix_hook_events_target_resource_id', 'hook_events',
        ['target', 'resource_id', 'status', 'id'], unique=False,
    )
    op.create_index(
        'ix_hook_events_status_next_attempt_at', 'hook_events', ['status', 'next_attempt_at'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_hook_events_status_next_attempt_at', table_name='hook_events')
    op.drop_index('ix_hook_events_target_resource_id', table_name='hook_events')
    op.drop_table('hook_events')
