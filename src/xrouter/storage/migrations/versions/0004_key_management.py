"""Key management: key kinds, disabling, expiry, model allow-lists and monthly budgets; usage
cost and owner; per-key usage rollups by minute, hour and day.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_COLUMNS = (
    "kind",
    "disabled",
    "expires_at",
    "last_used_at",
    "allowed_models",
    "monthly_budget_rub",
)


def upgrade() -> None:
    # Batch mode: SQLite cannot alter tables in place; elsewhere it emits plain ALTER TABLE.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="inference")
        )
        batch.add_column(
            sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("monthly_budget_rub", sa.Float(), nullable=True))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("user_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("cost_rub", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "usage_rollups",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("granularity", sa.String(8), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_rub", sa.Float(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.Column("ttft_ms_sum", sa.Float(), nullable=False),
        sa.Column("ttft_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "granularity", "bucket_start", name="pk_usage_rollups"),
    )


def downgrade() -> None:
    op.drop_table("usage_rollups")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cost_rub")
        batch.drop_column("user_id")
    with op.batch_alter_table("api_keys") as batch:
        for name in reversed(_KEY_COLUMNS):
            batch.drop_column(name)
