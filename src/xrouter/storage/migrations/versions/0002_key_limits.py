"""Per-key rate limits: requests per minute, tokens per minute, tokens per day.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("rpm", "tpm", "tpd")


def upgrade() -> None:
    # Batch mode: SQLite cannot alter tables in place; elsewhere it emits plain ALTER TABLE.
    with op.batch_alter_table("api_keys") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
