"""Reading the key forms of the web UI into typed values, with messages people can act on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from xrouter.errors import InvalidRequestError
from xrouter.keys.service import UNCHANGED, KeyChanges, KeyInfo


@dataclass(frozen=True, slots=True)
class KeyForm:
    """The fields of the create and edit forms."""

    name: str
    rpm: int | None
    tpm: int | None
    tpd: int | None
    monthly_budget_rub: float | None
    allowed_models: list[str] | None
    expires_at: datetime | None
    log_content: bool

    def changes(self, current: KeyInfo, disabled: bool) -> KeyChanges:
        # An expiry shown in the form and sent back unchanged stays as it is, even if it has
        # passed (only a new expiry must lie in the future).
        same_expiry = _same_minute(self.expires_at, current.expires_at)
        return KeyChanges(
            name=self.name,
            rpm=self.rpm,
            tpm=self.tpm,
            tpd=self.tpd,
            monthly_budget_rub=self.monthly_budget_rub,
            allowed_models=self.allowed_models,
            expires_at=UNCHANGED if same_expiry else self.expires_at,
            disabled=disabled,
            log_content=self.log_content,
        )

    def create_arguments(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "tpd": self.tpd,
            "monthly_budget_rub": self.monthly_budget_rub,
            "allowed_models": self.allowed_models,
            "expires_at": self.expires_at,
            "log_content": self.log_content,
        }


def read_key_form(form: dict[str, str], utc_offset_hours: int) -> KeyForm:
    """The form's values; ``InvalidRequestError`` naming the first bad field. Empty numbers
    mean "the default" (no own limit), an empty model list means every model, and the expiry
    (an HTML ``datetime-local`` value) is read at the UI's UTC offset."""
    return KeyForm(
        name=form.get("name", "").strip(),
        rpm=_integer(form, "rpm"),
        tpm=_integer(form, "tpm"),
        tpd=_integer(form, "tpd"),
        monthly_budget_rub=_number(form, "monthly_budget_rub"),
        allowed_models=_models(form.get("allowed_models", "")),
        expires_at=_moment(form.get("expires_at", ""), utc_offset_hours),
        # An unticked checkbox is not sent at all.
        log_content=form.get("log_content") == "on",
    )


def _integer(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "").strip().replace(" ", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequestError(f"{name}: enter a whole number.", param=name) from None


def _number(form: dict[str, str], name: str) -> float | None:
    text = form.get(name, "").strip().replace(" ", "").replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidRequestError(f"{name}: enter a number.", param=name) from None


def _models(text: str) -> list[str] | None:
    parts = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    return parts or None


def _moment(text: str, utc_offset_hours: int) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            "expires_at: enter a date and time.", param="expires_at"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(timedelta(hours=utc_offset_hours)))
    return moment


def _same_minute(first: datetime | None, second: datetime | None) -> bool:
    if first is None or second is None:
        return first is second
    return abs((first - second).total_seconds()) < 60


def form_values_of(info: KeyInfo, utc_offset_hours: int) -> dict[str, str]:
    """A key's current settings as the edit form shows them."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    expires = info.expires_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if info.expires_at else ""
    budget = info.monthly_budget_rub
    return {
        "name": info.name,
        "rpm": "" if info.rpm is None else str(info.rpm),
        "tpm": "" if info.tpm is None else str(info.tpm),
        "tpd": "" if info.tpd is None else str(info.tpd),
        "monthly_budget_rub": "" if budget is None else f"{budget:g}",
        "allowed_models": ", ".join(info.allowed_models or ()),
        "expires_at": expires,
        "log_content": "on" if info.log_content else "",
    }
