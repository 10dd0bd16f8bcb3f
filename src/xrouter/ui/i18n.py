"""The UI's strings in English and Russian, and how a request picks its language."""

from __future__ import annotations

from starlette.requests import HTTPConnection

LANGUAGES = ("en", "ru")
LANGUAGE_COOKIE = "xrouter_lang"

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "brand": "XRouter",
        "skip": "Skip to content",
        "language": "Language",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "signed_in_as": "Signed in as",
        "email": "Email",
        "password": "Password",
        "login_title": "Sign in to XRouter",
        "login_failed": "Wrong email or password.",
        "login_throttled": "Too many failed attempts. Try again in {seconds} seconds.",
        "consent_title": "Allow access?",
        "consent_intro": "asks for access to your XRouter account.",
        "consent_scopes": "It will be able to:",
        "consent_redirect": "After you decide, you will be sent to:",
        "consent_key": (
            "A new API key named “{name}” will be created for this app. "
            "You can revoke it at any time on the Authorized apps page."
        ),
        "consent_client_id": "Client ID",
        "allow": "Allow",
        "deny": "Deny",
        "error_title": "Request refused",
        "apps_title": "Authorized apps",
        "apps_empty": "No app has access to your account.",
        "apps_app": "App",
        "apps_scopes": "Access",
        "apps_since": "Authorized",
        "apps_last": "Last authorized",
        "revoke": "Revoke access",
        "keys_title": "API keys created for apps",
        "keys_empty": "No app has created an API key for you.",
        "key_name": "Name",
        "key_prefix": "Key",
        "key_created": "Created",
        "revoke_key": "Revoke key",
        "revoked_notice": "Access revoked.",
        "csrf_failed": (
            "The form expired or was not sent from this site. Reload the page and try again."
        ),
    },
    "ru": {
        "brand": "XRouter",
        "skip": "Перейти к содержимому",
        "language": "Язык",
        "sign_in": "Войти",
        "sign_out": "Выйти",
        "signed_in_as": "Вы вошли как",
        "email": "Электронная почта",
        "password": "Пароль",
        "login_title": "Вход в XRouter",
        "login_failed": "Неверная почта или пароль.",
        "login_throttled": "Слишком много неудачных попыток. Повторите через {seconds} с.",
        "consent_title": "Разрешить доступ?",
        "consent_intro": "запрашивает доступ к вашему аккаунту XRouter.",
        "consent_scopes": "Приложение сможет:",
        "consent_redirect": "После решения вы будете перенаправлены на:",
        "consent_key": (
            "Для приложения будет создан новый API-ключ «{name}». Его можно отозвать "
            "в любой момент на странице «Приложения с доступом»."
        ),
        "consent_client_id": "Идентификатор клиента",
        "allow": "Разрешить",
        "deny": "Отказать",
        "error_title": "Запрос отклонён",
        "apps_title": "Приложения с доступом",
        "apps_empty": "Ни у одного приложения нет доступа к вашему аккаунту.",
        "apps_app": "Приложение",
        "apps_scopes": "Доступ",
        "apps_since": "Разрешено",
        "apps_last": "Последнее разрешение",
        "revoke": "Отозвать доступ",
        "keys_title": "API-ключи, созданные для приложений",
        "keys_empty": "Приложения не создавали для вас API-ключей.",
        "key_name": "Название",
        "key_prefix": "Ключ",
        "key_created": "Создан",
        "revoke_key": "Отозвать ключ",
        "revoked_notice": "Доступ отозван.",
        "csrf_failed": (
            "Форма устарела или отправлена не с этого сайта. Обновите страницу и повторите."
        ),
    },
}


def language_of(connection: HTTPConnection) -> str:
    """``?lang=``, else the language cookie, else the first supported Accept-Language."""
    for candidate in (
        connection.query_params.get("lang"),
        connection.cookies.get(LANGUAGE_COOKIE),
    ):
        if candidate in LANGUAGES:
            return candidate
    for part in connection.headers.get("accept-language", "").split(","):
        tag = part.split(";", 1)[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"


def translator(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["en"])
