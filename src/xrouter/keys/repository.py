"""Every query on the ``api_keys`` table. The caller owns the session and its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from xrouter.storage.models import ApiKey, new_id, utc_now

KEY_ID_PREFIX = "key_"


class ApiKeyRepository:
    """Reads and writes API key rows through one ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create(
        self,
        *,
        name: str,
        prefix: str,
        secret_hash: str,
        owner: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        tpd: int | None = None,
        kind: str = "inference",
        expires_at: datetime | None = None,
        allowed_models: list[str] | None = None,
        monthly_budget_rub: float | None = None,
        log_content: bool = False,
        created_by_app: str | None = None,
    ) -> ApiKey:
        """Insert a key row (flushed, not committed) and return it."""
        now = utc_now()
        key = ApiKey(
            id=new_id(KEY_ID_PREFIX),
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            owner=owner,
            created_at=now,
            updated_at=now,
            revoked_at=None,
            rpm=rpm,
            tpm=tpm,
            tpd=tpd,
            kind=kind,
            disabled=False,
            expires_at=expires_at,
            last_used_at=None,
            allowed_models=allowed_models,
            monthly_budget_rub=monthly_budget_rub,
            log_content=log_content,
            created_by_app=created_by_app,
        )
        self._session.add(key)
        await self._session.flush()
        return key

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not."""
        return await self._session.get(ApiKey, key_id)

    async def list(self, owner: str | None = None) -> Sequence[ApiKey]:
        """Every key (only ``owner``'s when given), oldest first."""
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if owner is not None:
            query = query.where(ApiKey.owner == owner)
        result = await self._session.scalars(query)
        return result.all()

    async def save(self, key: ApiKey) -> ApiKey:
        """Write changes made to ``key``'s attributes, bumping its stamp for the key caches."""
        key.updated_at = utc_now()
        await self._session.flush()
        return key

    async def disable_all_of(self, owner: str) -> int:
        """Disable every active key of ``owner``; how many were changed."""
        now = utc_now()
        result = await self._session.execute(
            update(ApiKey)
            .where(ApiKey.owner == owner, ApiKey.revoked_at.is_(None), ApiKey.disabled.is_(False))
            .values(disabled=True, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def revoke(self, key: ApiKey) -> ApiKey:
        """Mark ``key`` revoked (idempotent: an already revoked key is left as it is)."""
        if key.revoked_at is None:
            now = utc_now()
            key.revoked_at = now
            key.updated_at = now
            await self._session.flush()
        return key

    async def set_limits(
        self, key: ApiKey, *, rpm: int | None, tpm: int | None, tpd: int | None
    ) -> ApiKey:
        """Replace ``key``'s rate limits (None: the configured default) and bump its stamp."""
        key.rpm, key.tpm, key.tpd = rpm, tpm, tpd
        key.updated_at = utc_now()
        await self._session.flush()
        return key

    async def changed_since(self, since: datetime | None) -> Sequence[ApiKey]:
        """Keys inserted or changed after ``since`` (every key when it is None)."""
        query = select(ApiKey).order_by(ApiKey.updated_at)
        if since is not None:
            query = query.where(ApiKey.updated_at > since)
        result = await self._session.scalars(query)
        return result.all()

    async def active_all(self) -> Sequence[ApiKey]:
        """Every key that is not revoked."""
        result = await self._session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))
        return result.all()
