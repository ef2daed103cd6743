"""tus concatenation: a final upload's pieces, and terminated partials still read by one

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:00:00

Additive only (a new table, a nullable column): the previous release keeps working.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('terminated_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('concat_sources',
    sa.Column('final_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('start', sa.BigInteger(), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('length >= 0', name=op.f('ck_concat_sources_length_non_negative')),
    sa.CheckConstraint('start >= 0', name=op.f('ck_concat_sources_start_non_negative')),
    sa.ForeignKeyConstraint(['final_id'], ['resources.id'], name=op.f('fk_concat_sources_final_id_resources'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['resources.id'], name=op.f('fk_concat_sources_source_id_resources')),
    sa.PrimaryKeyConstraint('final_id', 'position', name=op.f('pk_concat_sources'))
    )
    with op.batch_alter_table('concat_sources', schema=None) as batch_op:
        batch_op.create_index('ix_concat_sources_source_id', ['source_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('concat_sources', schema=None) as batch_op:
        batch_op.drop_index('ix_concat_sources_source_id')
    op.drop_table('concat_sources')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('terminated_at')
