"""Secret patterns that know how far they can reach, for redaction that is safe on streams.

A streamed response arrives in chunks, and a secret may be split across two of them. The
redactor must hold back the tail of a chunk while a secret *might* be starting there, and no
longer. The standard ``re`` module cannot say "this could still become a match", so each
built-in pattern is written as a small tree of nodes, from which two regexes are derived:

* ``full``: the pattern itself (with a ``secret`` group for the part to mask);
* ``prefix``: matches, anchored at the end of the data (``\\Z``), every string that is a prefix
  of a match (or a whole match that more bytes could still extend or veto). Searching it over
  the last ``window`` bytes finds the leftmost position where a match may still be in progress;
  everything before that position is decided and can be sent.

``window`` is the longest a match (with its lookahead) can be: it bounds how much is held back.
User patterns are plain regexes; without a prefix regex, the redactor holds back their whole
window (their maximum width, capped by ``FASTPROXY_REDACT_MAX_SECRET``).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

# How far lookarounds in user patterns are assumed to look past a match (bytes).
USER_LOOKAROUND: Final = 32


class Node:
    """A piece of a pattern; ``full`` is its regex, ``partial`` matches any prefix of it."""

    def full(self) -> str:
        raise NotImplementedError

    def head(self) -> str:
        """A whole match of this node as the start of a prefix (``full`` without groups)."""
        return self.full()

    def partial(self) -> str:
        raise NotImplementedError

    def width(self) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class Lit(Node):
    text: str
    icase: bool = False

    def _wrap(self, source: str) -> str:
        return f"(?i:{source})" if self.icase else f"(?:{source})"

    def full(self) -> str:
        return self._wrap(re.escape(self.text))

    def partial(self) -> str:
        # "abc" -> (?:a(?:b(?:c)?)?)? : every prefix, the empty one included.
        source = ""
        for char in reversed(self.text):
            source = f"(?:{re.escape(char)}{source})?"
        return self._wrap(source)

    def width(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class Cls(Node):
    """A character class repeated ``low`` to ``high`` times.

    ``until`` (for a lazy repeat followed by a terminator) is the terminator's regex: once it
    has been seen the repeat cannot grow, so a prefix never runs past it.
    """

    chars: str
    low: int
    high: int
    lazy: bool = False
    until: str | None = None

    def full(self) -> str:
        return f"{self.chars}{{{self.low},{self.high}}}{'?' if self.lazy else ''}"

    def head(self) -> str:
        if self.until is not None:
            return f"(?:(?!{self.until}){self.chars}){{{self.low},{self.high}}}"
        return self.full()

    def partial(self) -> str:
        if self.until is not None:
            return f"(?:(?!{self.until}){self.chars}){{0,{self.high}}}"
        return f"{self.chars}{{0,{self.high}}}"

    def width(self) -> int:
        return self.high


@dataclass(frozen=True)
class Seq(Node):
    items: tuple[Node, ...]

    def full(self) -> str:
        return "".join(item.full() for item in self.items)

    def head(self) -> str:
        return "".join(item.head() for item in self.items)

    def partial(self) -> str:
        # A prefix of a sequence: whole items, then a prefix of the next one.
        branches = []
        for index, item in enumerate(self.items):
            head = "".join(done.head() for done in self.items[:index])
            branches.append(head + item.partial())
        return "(?:" + "|".join(branches) + ")"

    def width(self) -> int:
        return sum(item.width() for item in self.items)


@dataclass(frozen=True)
class Alt(Node):
    options: tuple[Node, ...]

    def full(self) -> str:
        return "(?:" + "|".join(option.full() for option in self.options) + ")"

    def head(self) -> str:
        return "(?:" + "|".join(option.head() for option in self.options) + ")"

    def partial(self) -> str:
        return "(?:" + "|".join(option.partial() for option in self.options) + ")"

    def width(self) -> int:
        return max(option.width() for option in self.options)


@dataclass(frozen=True)
class Behind(Node):
    """A lookbehind: decided by bytes already seen."""

    source: str

    def full(self) -> str:
        return self.source

    def partial(self) -> str:
        return self.source

    def width(self) -> int:
        return 0


@dataclass(frozen=True)
class Ahead(Node):
    """A lookahead of ``reach`` bytes: undecided until those bytes arrive."""

    source: str
    reach: int = 1

    def full(self) -> str:
        return self.source

    def partial(self) -> str:
        return ""

    def width(self) -> int:
        return self.reach


@dataclass(frozen=True)
class Secret(Node):
    """The part of a match that is masked (the rest, e.g. a label, is kept)."""

    inner: Node

    def full(self) -> str:
        return f"(?P<secret>{self.inner.full()})"

    def head(self) -> str:
        return self.inner.head()

    def partial(self) -> str:
        return self.inner.partial()

    def width(self) -> int:
        return self.inner.width()


def seq(*items: Node) -> Seq:
    return Seq(tuple(items))


def alt(*options: Node) -> Alt:
    return Alt(tuple(options))


def optional(node: Node) -> Alt:
    return Alt((node, Seq(())))


@dataclass(frozen=True)
class Trigger:
    """Literals every match contains, at most ``lead`` bytes after the match's start.

    A scan looks for them first (a fast literal search): without them no match, and no
    unfinished match, is possible, and the slower full and prefix regexes are not run.
    """

    literals: tuple[bytes, ...]
    icase: bool = False
    lead: int = 0

    def find(self, text: bytes, start: int) -> int | None:
        """Where the first literal (whole, or cut short by the end) starts at/after ``start``.

        ``text`` is the data, lower-cased when ``icase`` (``bytes.find`` is many times faster
        than a case-insensitive regex search).
        """
        found = -1
        for literal in self._literals:
            at = text.find(literal, start)
            if at >= 0 and (found < 0 or at < found):
                found = at
        if found >= 0:
            return found
        end = len(text)
        cut_short = self._cut_short
        for size in range(min(self._longest, end - start), 0, -1):
            if text[end - size :] in cut_short:
                return end - size
        return None

    @functools.cached_property
    def _literals(self) -> tuple[bytes, ...]:
        return tuple(literal.lower() if self.icase else literal for literal in self.literals)

    @functools.cached_property
    def _cut_short(self) -> frozenset[bytes]:
        """Every proper, non-empty prefix of the literals (lower-case when ``icase``)."""
        return frozenset(
            literal[:size] for literal in self._literals for size in range(1, len(literal))
        )

    @functools.cached_property
    def _longest(self) -> int:
        return max(len(literal) for literal in self.literals) - 1


@dataclass(frozen=True)
class Rule:
    """One secret pattern, ready to scan with."""

    name: str
    full: re.Pattern[bytes]
    prefix: re.Pattern[bytes] | None  # None: every position in the window is undecided
    window: int  # the most bytes a match (and its lookahead) can span
    masks_group: bool  # mask only the ``secret`` group
    trigger: Trigger | None = None

    def first_candidate(self, data: bytes, lowered: bytes, start: int) -> int | None:
        """The earliest position from ``start`` where a match could begin, or ``None``.

        ``lowered`` is ``data.lower()``. Without a trigger every position is a candidate.
        """
        trigger = self.trigger
        if trigger is None:
            return start
        at = trigger.find(lowered if trigger.icase else data, start)
        return None if at is None else max(start, at - trigger.lead)


def rule_from_node(name: str, node: Node, trigger: Trigger | None = None) -> Rule:
    full = re.compile(node.full().encode())
    prefix = re.compile(("(?:" + node.partial() + r")\Z").encode())
    return Rule(name, full, prefix, node.width(), "secret" in full.groupindex, trigger)


def rule_from_regex(name: str, pattern: re.Pattern[bytes], max_secret: int) -> Rule:
    """A user pattern: its window is its maximum width (capped), plus room for lookarounds."""
    width = max_width(pattern)
    window = min(width, max_secret) if width is not None else max_secret
    return Rule(name, pattern, None, window + USER_LOOKAROUND, "secret" in pattern.groupindex)


def max_width(pattern: re.Pattern[bytes]) -> int | None:
    """The longest match ``pattern`` can make, or ``None`` if unbounded or unknown.

    Uses the standard library's regex parser (``re._parser`` since Python 3.11); where it is
    not available the caller falls back to its cap.
    """
    try:
        parser: Any = importlib.import_module("re._parser")
        _, high = parser.parse(pattern.pattern, pattern.flags).getwidth()
    except Exception:
        return None
    return int(high) if high < parser.MAXREPEAT else None


# The built-in secrets. Character classes are bytes-regex sources.
_ALNUM: Final = "[A-Za-z0-9]"
_SEP: Final = r"[-_. ]"
_QUOTE_SPACE: Final = "[\\\\\"' \\t]"  # quotes, escaped quotes (JSON in JSON), blanks
_B64: Final = "[A-Za-z0-9/+]"
_TOKEN: Final = r"[A-Za-z0-9\-._~+/]"
_LABEL: Final = "[A-Z0-9 ]"
_PEM_END: Final = "-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----"


def builtin_rules(max_secret: int, names: Sequence[str] | None = None) -> list[Rule]:
    """The built-in rules (all, or those named), sized for secrets up to ``max_secret`` bytes."""
    nodes: dict[str, Node] = {
        # AWS access key ids: AKIA (long-term) / ASIA (temporary) + 16 upper-case alphanumerics.
        "aws-access-key-id": seq(
            Behind(f"(?<!{_ALNUM})"),
            Secret(seq(alt(Lit("AKIA"), Lit("ASIA")), Cls("[A-Z0-9]", 16, 16))),
            Ahead(f"(?!{_ALNUM})"),
        ),
        # 40 base64-ish characters after a secret-key label: aws_secret_access_key = ...,
        # "SecretAccessKey": "...", AWS_SECRET_ACCESS_KEY: ..., secretAccessKey=...
        "aws-secret-access-key": seq(
            Behind(f"(?<!{_ALNUM})"),
            optional(seq(Lit("aws", icase=True), Cls(_SEP, 0, 1))),
            Lit("secret", icase=True),
            Cls(_SEP, 0, 1),
            optional(seq(Lit("access", icase=True), Cls(_SEP, 0, 1))),
            Lit("key", icase=True),
            Cls(_QUOTE_SPACE, 0, 4),
            Cls("[:=]", 1, 1),
            Cls(_QUOTE_SPACE, 0, 4),
            Secret(Cls(_B64, 40, 40)),
            Ahead("(?![A-Za-z0-9/+=])"),
        ),
        # Bearer tokens (Authorization headers, "Bearer xxx" anywhere); the word is kept.
        "bearer-token": seq(
            Behind(f"(?<!{_ALNUM})"),
            Lit("bearer", icase=True),
            Cls("[ \\t]", 1, 8),
            Secret(seq(Cls(_TOKEN, 8, max(8, max_secret)), Cls("=", 0, 2))),
        ),
        # PEM private key blocks (RSA, EC, OPENSSH, ENCRYPTED, PKCS#8...), masked whole.
        "private-key": seq(
            Lit("-----BEGIN "),
            Cls(_LABEL, 0, 40),
            Lit("PRIVATE KEY-----"),
            Cls(r"[\s\S]", 0, max_secret, lazy=True, until=_PEM_END),
            Lit("-----END "),
            Cls(_LABEL, 0, 40),
            Lit("PRIVATE KEY-----"),
        ),
    }
    triggers = {
        "aws-access-key-id": Trigger((b"AKIA", b"ASIA")),
        "aws-secret-access-key": Trigger((b"secret",), icase=True, lead=4),  # "aws_" first
        "bearer-token": Trigger((b"bearer",), icase=True),
        "private-key": Trigger((b"-----BEGIN ",)),
    }
    chosen = list(nodes) if names is None else list(names)
    return [rule_from_node(name, nodes[name], triggers[name]) for name in chosen]


BUILTIN_RULE_NAMES: Final = (
    "aws-access-key-id",
    "aws-secret-access-key",
    "bearer-token",
    "private-key",
)
