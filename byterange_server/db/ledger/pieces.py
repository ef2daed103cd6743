"""The ``concat_sources`` rows: the pieces of a tus final upload, each a partial upload's bytes
at an offset of the final (nothing is copied), and the questions deletion asks about them.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy import insert
from sqlalchemy import select

from ...storage.composed import Piece
from ..models import concat_sources
from ..models import resources


def insert_pieces(conn: Connection, final_id: str, pieces: Sequence[Piece]) -> None:
    conn.execute(
        insert(concat_sources),
        [
            {
                "final_id": final_id,
                "position": piece.position,
                "source_id": piece.source_id,
                "start": piece.start,
                "length": piece.length,
            }
            for piece in pieces
        ],
    )


def load_pieces(conn: Connection, final_id: str) -> list[Piece]:
    """The pieces of a final upload in order; empty for any other resource."""
    rows = conn.execute(
        select(concat_sources)
        .where(concat_sources.c.final_id == final_id)
        .order_by(concat_sources.c.position)
    ).all()
    return [Piece(row.position, row.source_id, row.start, row.length) for row in rows]


def finals_reading(conn: Connection, source_id: str) -> list[str]:
    """Ids of the final uploads that read from ``source_id``."""
    rows = conn.execute(
        select(concat_sources.c.final_id).where(concat_sources.c.source_id == source_id).distinct()
    ).all()
    return [row.final_id for row in rows]


def source_statuses(conn: Connection, source_ids: Iterable[str]) -> dict[str, str]:
    """Status of each source, terminated ones included (a final keeps reading from them)."""
    ids = list(set(source_ids))
    rows = conn.execute(select(resources.c.id, resources.c.status).where(resources.c.id.in_(ids))).all()
    return {row.id: row.status for row in rows}


def unreferenced_terminated(conn: Connection, source_ids: Iterable[str]) -> list[str]:
    """Of ``source_ids``, the terminated ones no final reads from any more."""
    ids = list(set(source_ids))
    if not ids:
        return []
    rows = conn.execute(
        select(resources.c.id).where(
            resources.c.id.in_(ids),
            resources.c.terminated_at.is_not(None),
            ~select(concat_sources.c.final_id)
            .where(concat_sources.c.source_id == resources.c.id)
            .exists(),
        )
    ).all()
    return [row.id for row in rows]
