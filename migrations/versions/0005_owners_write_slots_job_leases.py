"""Authentication and limits: resource owners, write slots, job leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 12:00:00

``resources.owner`` is nullable: resources created before this revision (or with
authentication off) belong to nobody. The two new tables are only read by this release.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=255), nullable=True))
    op.create_table(
        'write_slots',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('resource_id', sa.String(length=64), nullable=False),
        sa.Column('principal', sa.String(length=255), nullable=True),
        sa.Column('lease_expires_ms', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ['resource_id'], ['resources.id'],
            name=op.f('fk_write_slots_resource_id_resources'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_write_slots')),
    )
    op.create_index('ix_write_slots_resource_id', 'write_slots', ['resource_id'], unique=False)
    op.create_index('ix_write_slots_principal', 'write_slots', ['principal'], unique=False)
    op.create_table(
        'job_leases',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('holder', sa.String(length=64), nullable=False),
        sa.Column('lease_expires_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_job_leases')),
    )


def downgrade() -> None:
    op.drop_table('job_leases')
    op.drop_index('ix_write_slots_principal', table_name='write_slots')
    op.drop_index('ix_write_slots_resource_id', table_name='write_slots')
    op.drop_table('write_slots')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('owner')
