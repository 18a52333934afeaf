"""Agent replies (Markdown-ish LLM text) cut to a platform's message size, and rendered
as Telegram HTML.  (Discord takes the markdown as it is and only needs `split`.)

Telegram's HTML parse mode is used because its escaping is simple (`&`, `<`, `>`) and a
malformed message is rejected outright instead of silently losing characters; the plain
rendering is what the adapter sends when it is rejected anyway.  A message holds at most
4096 UTF-16 code units, so long replies are split, and the limit is applied to the
rendered HTML (the bigger of the two forms), which is conservative but always safe.
Everything here is pure: no I/O, no python-telegram-bot.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable

MAX_UNITS = 4096

# Fences must start a line; the language is bounded so a reopened block stays small.
_FENCE = re.compile(r" {0,3}```([\w+#.-]{0,32})[ \t\r]*")
_CLOSE = re.compile(r" {0,3}```[ \t\r]*")
_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t\r]*")
_QUOTE = re.compile(r" {0,3}>[ \t]?(.*)")
_BULLET = re.compile(r"([ \t]*)[-*+][ \t]+(.*)")
_NONSPACE = re.compile(r"\S")
_BLANK = re.compile(r"[ \t\r]*\n")
_URL = r"(?:https?://|tg://|mailto:)[^\s<>()]*(?:\([^\s<>()]*\)[^\s<>()]*)*"


def _span(delim: str, name: str, word: bool = False) -> str:
    """A delimited span whose content neither starts nor ends with a space or the
    delimiter, so `2 * 3 * 4` or a lone `**` is never taken for markup.  The content never
    contains the delimiter, which keeps matching linear on long lines full of `*`."""
    d, c = re.escape(delim), re.escape(delim[0])
    before, after = (r"(?<!\w)", r"(?!\w)") if word else ("", "")
    return rf"{before}{d}(?P<{name}>[^\s{c}](?:(?:(?!{d}).)*?[^\s{c}])?){d}{after}"


# Alternatives are tried left to right at each position: code spans first, since nothing
# inside them is markup, and `**` before `*`.  Spans never cross a line.
_INLINE = re.compile("|".join([
    r"(?<!`)(?P<ticks>`+)(?!`)(?P<code>.+?)(?<!`)(?P=ticks)(?!`)",  # equal, whole runs
    rf"\[(?P<text>[^\[\]\n]+)\]\((?P<url>{_URL})\)",
    _span("**", "b"), _span("__", "b_", word=True), _span("~~", "s"), _span("||", "spoiler"),
    _span("*", "i"), _span("_", "i_", word=True),  # `snake_case` is not italic
]))
_TAGS = {"b": "b", "b_": "b", "s": "s", "spoiler": "tg-spoiler", "i": "i", "i_": "i"}


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji is usually two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _esc(text: str, as_html: bool) -> str:
    return html.escape(text, quote=False) if as_html else text


def _inline(line: str, as_html: bool) -> str:
    """Convert spans.  Each match emits an opening and its closing tag around recursively
    converted content, so the result is balanced by construction."""
    out, pos = [], 0
    for m in _INLINE.finditer(line):
        out.append(_esc(line[pos:m.start()], as_html))
        pos = m.end()
        if m["code"] is not None:
            out.append(f"<code>{_esc(m['code'], True)}</code>" if as_html else m["code"])
        elif m["url"] is not None:
            inner = _inline(m["text"], as_html)
            out.append(f'<a href="{html.escape(m["url"])}">{inner}</a>' if as_html
                       else f"{inner} ({m['url']})")
        else:
            kind = m.lastgroup or ""
            inner = _inline(m[kind], as_html)
            out.append(f"<{_TAGS[kind]}>{inner}</{_TAGS[kind]}>" if as_html else inner)
    out.append(_esc(line[pos:], as_html))
    return "".join(out)


def _blocks(md: str) -> tuple[list[tuple[str | None, list[str]]], str | None]:
    """Split into text blocks (language None) and fenced code blocks, and report the
    language of a fence left open at the end (None if all are closed).  An unclosed fence
    runs to the end, as in CommonMark: a reply cut off by a token limit is still code."""
    blocks: list[tuple[str | None, list[str]]] = []
    lang: str | None = None
    lines: list[str] = []
    for line in md.split("\n"):
        if lang is None and (m := _FENCE.fullmatch(line)):
            if lines:
                blocks.append((None, lines))
            lines, lang = [], m[1]
        elif lang is not None and _CLOSE.fullmatch(line):
            blocks.append((lang, lines))
            lines, lang = [], None
        else:
            lines.append(line)
    if lines or lang is not None:
        blocks.append((lang, lines))
    return blocks, lang


def _text_block(lines: list[str], as_html: bool) -> str:
    out: list[str] = []
    quote: list[str] = []

    def flush() -> None:
        if quote:
            inner = "\n".join(quote)
            out.append(f"<blockquote>{inner}</blockquote>" if as_html else inner)
            quote.clear()

    for line in lines:
        if m := _QUOTE.fullmatch(line):
            quote.append(_inline(m[1], as_html))
            continue
        flush()
        if m := _HEADING.fullmatch(line):  # Telegram has no headings: bold is closest
            title = _inline(m[1], as_html)
            out.append(f"<b>{title}</b>" if as_html else title)
        elif m := _BULLET.fullmatch(line):  # and a leading `*` must not start italics
            out.append(f"{m[1]}• {_inline(m[2], as_html)}")
        else:
            out.append(_inline(line, as_html))
    flush()
    return "\n".join(out)


def _render(md: str, as_html: bool) -> str:
    parts = []
    for lang, lines in _blocks(md)[0]:
        if lang is None:
            parts.append(_text_block(lines, as_html))
        elif not as_html:
            parts.append("\n".join(lines))
        else:
            code = _esc("\n".join(lines), True)
            parts.append(f'<pre><code class="language-{lang}">{code}</code></pre>' if lang
                         else f"<pre>{code}</pre>")
    return "\n".join(parts)


def to_html(markdown: str) -> str:
    """Telegram HTML for `markdown`: everything escaped, markup converted where balanced."""
    return _render(markdown, True)


def to_plain(markdown: str) -> str:
    """The same text with the markup removed, for when Telegram rejects the HTML."""
    return _render(markdown, False)


def _boundary(text: str, i: int) -> bool:
    """Whether a cut before text[i] keeps characters whole: not before a combining mark,
    variation selector, skin tone, emoji tag or ZWJ, not after a ZWJ, not inside a flag."""
    if i <= 0 or i >= len(text):
        return True
    c, o = text[i], ord(text[i])
    if text[i - 1] == "\u200d" or c == "\u200d" or 0xFE00 <= o <= 0xFE0F:
        return False
    if 0x1F3FB <= o <= 0x1F3FF or 0xE0020 <= o <= 0xE007F or unicodedata.category(c)[0] == "M":
        return False
    run = 0  # regional indicators pair up into flags: cut only after an even number
    while 0x1F1E6 <= o <= 0x1F1FF and run < i and "\U0001F1E6" <= text[i - 1 - run] <= "\U0001F1FF":
        run += 1
    return run % 2 == 0


def split(text: str, limit: int = MAX_UNITS, measure: Callable[[str], int] | None = None) -> list[str]:
    """Chunks of `text`, each rendering to at most `limit` UTF-16 units of HTML (or, with
    `measure`, at most `limit` of what it counts: Discord sends markdown as it is).

    Cuts at the last paragraph break that fits, else line break, else space (each looked
    for in the later half of what fits first), else between whole characters.  A code
    block cut in two is closed and reopened with its language, so both halves render as
    code; whitespace at a cut is dropped (except a code line's indent)."""
    chunks: list[str] = []
    pos, opener = 0, ""
    while (first := _NONSPACE.search(text, pos)) is not None:
        start = first.start()
        if opener and (nl := text.rfind("\n", pos, start)) >= 0:
            start = nl + 1
        chunk, pos, opener = _next_chunk(text, start, first.start(), opener, limit,
                                         measure or _html_units)
        chunks.append(chunk)
    return chunks


def _html_units(chunk: str) -> int:
    return utf16_len(to_html(chunk))


def _next_chunk(text: str, start: int, first: int, opener: str, limit: int,
                measure: Callable[[str], int]) -> tuple[str, int, str]:
    """The longest well-cut chunk from `start` (whose first non-space is at `first`), the
    position after it, and the fence line that reopens a code block it leaves open."""
    n = len(text)

    def build(cut: int) -> tuple[str, str]:
        body = (opener + text[start:cut]).rstrip()
        lang = _blocks(body)[1]
        return (body, "") if lang is None else (body + "\n```", f"```{lang}\n")

    def fits(cut: int) -> bool:
        return measure(build(cut)[0]) <= limit

    def opens_code(p: int) -> bool:  # a cut right after an opening fence: empty block
        line = text[(text.rfind("\n", start, p) + 1) or start:p]
        return bool(_FENCE.fullmatch(line)) and build(p)[1] != ""

    lo, hi = first, min(n, start + 2 * limit)  # HTML is rarely shorter than its source
    if hi == n and fits(n):
        lo = n
    while lo < hi:  # the rendered length grows (nearly) monotonically with the cut
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    if lo == first:  # e.g. a long fence line: settle for any short piece that fits
        lo = max((c for c in range(first + 1, min(n, first + 64) + 1) if fits(c)),
                 default=first)
    while lo > first:
        cut = lo if lo == n else _best_cut(text, first, lo, opens_code)
        chunk, reopen = build(cut)
        if measure(chunk) <= limit:  # verify: monotonicity is not guaranteed
            return chunk, cut, reopen
        lo = cut - 1
    if opener not in ("", "```\n"):  # the language does not fit: reopen without it
        return _next_chunk(text, start, first, "```\n", limit, measure)
    raise ValueError(f"limit {limit} is too small to hold {text[first:first + 8]!r}")


def _best_cut(text: str, first: int, hi: int, opens_code: Callable[[int], bool]) -> int:
    """Where to cut in (first, hi]: paragraph break, line break, space, character.  Only
    the later half of the window is searched for breaks: a break near the start would send
    a fragment on its own ("a:" before 4,000 emoji), so then a cut between characters wins."""
    def paragraph(p: int) -> bool:
        return text[p] == "\n" and _BLANK.match(text, p + 1) is not None

    floor = first + (hi - first) // 2
    for tier in (paragraph, lambda p: text[p] == "\n", lambda p: text[p].isspace()):
        for p in range(hi, floor, -1):
            if tier(p) and not opens_code(p):
                return p
    cut = hi
    while cut > first and not _boundary(text, cut):
        cut -= 1
    return cut if cut > first else hi  # one enormous cluster: cut it as a last resort


def render(text: str, limit: int = MAX_UNITS) -> list[tuple[str, str]]:
    """(html, plain) for each chunk of `text`: what the adapter sends, and its fallback."""
    return [(to_html(chunk), to_plain(chunk)) for chunk in split(text, limit)]
