"""Telegram formatting: what is sent fits the limit, is valid HTML, and loses nothing."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from hermesd.platforms.formatting import (
    MAX_UNITS,
    render,
    split,
    to_html,
    to_plain,
    utf16_len,
)

ALLOWED = {"b", "strong", "i", "em", "u", "s", "code", "pre", "a", "blockquote", "tg-spoiler"}


class TagChecker(HTMLParser):
    """Fails on any tag Telegram would reject, or on tags that do not nest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED, tag
        names = [name for name, _ in attrs]
        if tag == "a":
            assert names == ["href"]
        elif tag == "code" and attrs:
            assert self.stack[-1:] == ["pre"] and names == ["class"]
            assert (attrs[0][1] or "").startswith("language-")
        else:
            assert not attrs, (tag, attrs)
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, (tag, self.stack)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"self-closing <{tag}/>")


def assert_valid_html(html: str) -> None:
    checker = TagChecker()
    checker.feed(html)
    checker.close()
    assert checker.stack == []
    text = re.sub(r"<[^>]*>", "", html)
    assert "<" not in text and ">" not in text
    assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt|quot);)*", text), html


def non_space(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)


def test_emoji_reply_splits_on_whole_characters() -> None:
    reply = "😀" * 4000  # 8000 UTF-16 units
    chunks = split(reply)
    assert len(chunks) == 2 and "".join(chunks) == reply
    for chunk in chunks:
        assert utf16_len(chunk) <= MAX_UNITS
        assert chunk.encode("utf-16-le").decode("utf-16-le") == chunk


def test_joined_emoji_are_never_cut() -> None:
    family, flag = "👨\u200d👩\u200d👧\u200d👦", "🇫🇷"
    for unit in (family, flag, "👍🏽", "e\u0301"):
        chunks = split(unit * 40, 50)
        assert "".join(chunks) == unit * 40
        assert all(c == unit * (len(c) // len(unit)) and utf16_len(c) <= 50 for c in chunks)


def test_paragraph_break_preferred_over_line_and_space() -> None:
    first = "one two three\nfour five six"
    text = f"{first}\n\nseven eight\nnine ten eleven twelve thirteen"
    assert split(text, 45)[0] == first
    lines = "\n".join(f"line {i} of text" for i in range(10))
    assert all(re.fullmatch(r"(line \d of text\n?)+", c) for c in split(lines, 60))
    words = " ".join(["word"] * 50)
    assert all(set(c.split(" ")) == {"word"} for c in split(words, 30))


def test_cut_drops_whitespace_and_no_chunk_is_empty() -> None:
    assert split("  \n\n ") == []
    assert split("a" * 10 + "\n\n   \n" + "b" * 10, 15) == ["a" * 10, "b" * 10]


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"    print({i})  # <{i}>" for i in range(80))
    text = f"Here is the script:\n\n```python\n{code}\n```\nDone."
    pairs = render(text, 500)
    assert len(pairs) >= 4
    for html, plain in pairs:
        assert utf16_len(html) <= 500 and utf16_len(plain) <= 500
        assert_valid_html(html)
    code_chunks = [html for html, _ in pairs if "print(" in html]
    opener = '<pre><code class="language-python">'
    assert code_chunks[0].startswith(f"Here is the script:\n\n{opener}")
    for html in code_chunks[1:]:
        assert html.startswith(f"{opener}    print(")
    for html in code_chunks:
        assert html.removesuffix("\nDone.").endswith("</code></pre>")
    assert pairs[-1][0].endswith("Done.")
    plain = "\n".join(p for _, p in pairs)
    assert [ln for ln in plain.splitlines() if "print" in ln] == code.splitlines()


def test_html_is_escaped() -> None:
    assert to_html("<script>alert(1)</script> & co") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co")
    assert to_html("```html\n<b>&amp;</b>\n```") == (
        '<pre><code class="language-html">&lt;b&gt;&amp;amp;&lt;/b&gt;</code></pre>')


def test_markup_is_converted() -> None:
    assert to_html("**bold**, *it*, _it_, `a<b`, [docs](https://x.io/?a=1&b=2)") == (
        '<b>bold</b>, <i>it</i>, <i>it</i>, <code>a&lt;b</code>, '
        '<a href="https://x.io/?a=1&amp;b=2">docs</a>')
    assert to_html("**bold *and* it**") == "<b>bold <i>and</i> it</b>"
    assert to_html("`**not bold**`") == "<code>**not bold**</code>"
    assert to_html("# Title\n- item\n> quoted") == (
        "<b>Title</b>\n• item\n<blockquote>quoted</blockquote>")


def test_unbalanced_markers_stay_literal() -> None:
    for text in ("**bold", "a ** b", "2 * 3 * 4", "snake_case_name", "`tick", "[x](y"):
        assert to_html(text) == text
        assert to_plain(text) == text


def test_plain_fallback_drops_markup() -> None:
    assert to_plain("**Hi** see [docs](https://x.io) and `a<b`\n```sh\nls -l\n```") == (
        "Hi see docs (https://x.io) and a<b\nls -l")


PIECES = ["**", "*", "_", "__", "`", "``", "```", "```py\n", "\n```\n", "~~", "||", "\n",
          "\n\n", " ", "  ", "<", ">", "&", "😀", "👨\u200d👩\u200d👧", "🇫🇷", "e\u0301",
          "[a](https://x.y/?q=1&r=<2>)", "# ", "> ", "- ", "word", "lo", "ng"]
texts = st.lists(
    st.sampled_from(PIECES) | st.characters(codec="utf-8"), max_size=120).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=texts, limit=st.integers(50, 200))
def test_any_reply_renders_within_limit_as_valid_html(text: str, limit: int) -> None:
    chunks = split(text, limit)
    pairs = render(text, limit)
    assert [(to_html(c), to_plain(c)) for c in chunks] == pairs
    for chunk, (html, plain) in zip(chunks, pairs, strict=False):
        assert chunk and chunk == chunk.strip()
        assert utf16_len(html) <= limit and utf16_len(plain) <= limit
        assert_valid_html(html)
        assert chunk.encode("utf-16-le").decode("utf-16-le") == chunk
    joined = non_space("".join(chunks))
    if "```" in text:  # closing and reopening fences only adds characters
        assert is_subsequence(non_space(text), joined)
    else:
        assert joined == non_space(text)


@settings(max_examples=100, deadline=None)
@given(text=texts)
def test_whole_reply_html_is_valid(text: str) -> None:
    assert_valid_html(to_html(text))
    assert "<" not in to_plain(text.replace("<", ""))
