"""The app an API key was issued to by the OpenRouter-compatible key flow (null for the rest).

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot alter tables in place; elsewhere it emits plain ALTER TABLE.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("created_by_app", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("created_by_app")
