"""Every string a template asks for exists in both languages (Jinja would render a missing
one as nothing, silently)."""

from __future__ import annotations

import re

from xrouter.ui.i18n import STRINGS
from xrouter.ui.pages import UI_DIR

_USED = re.compile(r"\bt\.([a-z_]*[a-z])\b(?! *\+)")
_INDEXED = re.compile(r"""\bt\[["']([a-z_]+)["']\]""")


def test_templates_use_only_known_strings() -> None:
    used: set[str] = set()
    for template in (UI_DIR / "templates").glob("*.html"):
        text = template.read_text(encoding="utf-8")
        used |= set(_USED.findall(text)) | set(_INDEXED.findall(text))
    assert used, "no strings found: the pattern is wrong"
    for language, strings in STRINGS.items():
        assert used <= set(strings), (language, sorted(used - set(strings)))
    assert set(STRINGS["en"]) == set(STRINGS["ru"])
    # A name a dict already has (t.copy, t.items) would render the method, not the string.
    assert not used & set(dir(dict)), sorted(used & set(dir(dict)))


def test_built_keys_exist() -> None:
    # Keys put together in templates: "status_" + status, "kind_" + kind, "metric_" + metric.
    for prefix, values in (
        ("status_", ("active", "disabled", "expired", "revoked")),
        ("kind_", ("inference", "management")),
        ("metric_", ("requests", "tokens", "cost", "errors", "latency")),
    ):
        for language in STRINGS:
            for value in values:
                assert prefix + value in STRINGS[language]
