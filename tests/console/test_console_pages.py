"""The pages as files: what must hold even before any script runs."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "console" / "static"


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.password_in: list[int] = []

    def handle_starttag(self, tag, attrs):
        if tag == "form":
            self.forms.append(dict(attrs))
        if tag == "input" and dict(attrs).get("type") == "password":
            self.password_in.append(len(self.forms) - 1)


def test_a_password_never_goes_into_a_url_even_without_the_script():
    """Issue 13, #13: a form without ``method="post"`` sends its fields as a
    query string if the script has not loaded (slow link, blocked file)."""
    for page in sorted(STATIC.glob("*.html")):
        forms = _Forms()
        forms.feed(page.read_text(encoding="utf-8"))
        for index in forms.password_in:
            assert index >= 0, f"{page.name}: a password field outside a form"
            assert (forms.forms[index].get("method") or "").lower() == "post", f"{page.name}: form {forms.forms[index]} is not POST"


def test_every_page_reads_the_ladder_from_the_server_before_its_scripts():
    for page in sorted(STATIC.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        assert text.index('src="/static/levels.js"') < text.index('src="/static/common.js"'), page.name
    assert "end_call_recommended" not in "".join(p.read_text(encoding="utf-8") for p in STATIC.glob("*.js")), \
        "a level name copied into a script: read CS.LEVEL_NAMES / CS.LEVEL_RANK"
