"""Object storage: the segment manifest and recorded garbage

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 12:00:00

``segments`` maps committed ranges of a resource onto the immutable objects an object store
holds (storage/s3.py); ``storage_gc`` records stored bytes to delete, in the transaction that
made them garbage; ``resources.block_size`` and ``resources.assembled_at`` say how a
resource's objects are cut and whether they were assembled into one. Files use none of them.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('block_size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('assembled_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'segments',
        sa.Column('resource_id', sa.String(length=64), nullable=False),
        sa.Column('start', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('stop', sa.BigInteger(), nullable=False),
        sa.Column('object_key', sa.Text(), nullable=False),
        sa.Column('object_offset', sa.BigInteger(), nullable=False),
        sa.Column('checksum', sa.BigInteger(), nullable=True),
        sa.CheckConstraint('start >= 0', name=op.f('ck_segments_start_non_negative')),
        sa.CheckConstraint('stop > start', name=op.f('ck_segments_not_empty')),
        sa.CheckConstraint('object_offset >= 0', name=op.f('ck_segments_offset_non_negative')),
        sa.ForeignKeyConstraint(
            ['resource_id'], ['resources.id'], name=op.f('fk_segments_resource_id_resources'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('resource_id', 'start', name=op.f('pk_segments')),
    )
    op.create_index('ix_segments_resource_id_stop', 'segments', ['resource_id', 'stop'], unique=False)
    op.create_table(
        'storage_gc',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('resource_id', sa.String(length=64), nullable=False),
        sa.Column('storage_key', sa.String(length=128), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('scope', sa.String(length=128), nullable=False),
        sa.Column('reservation_id', sa.String(length=32), nullable=True),
        sa.Column('not_before_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_storage_gc')),
    )
    op.create_index('ix_storage_gc_not_before_ms', 'storage_gc', ['not_before_ms'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_storage_gc_not_before_ms', table_name='storage_gc')
    op.drop_table('storage_gc')
    op.drop_index('ix_segments_resource_id_stop', table_name='segments')
    op.drop_table('segments')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('assembled_at')
        batch_op.drop_column('block_size')
