"""Segments: a saved filter on a list, written in a small language and compiled to SQL with bound parameters.

    fields.city = "Berlin" and subscribed_at >= 2024-01-01 and email_domain != "example.com"
    (name contains "ann" or fields.plan in ["pro", "team"]) and not fields.company is empty
    last_human_open < 90 days ago

Terms: `email`, `name`, `email_domain`, `subscribed_at`, `confirmed_at`, `last_human_open`, `last_human_click`, and
`fields.NAME` for a custom field. Operators: =, !=, <, <=, >, >=, `contains`, `in [...]`, `not in [...]`, `is empty`,
`is not empty`; `and`, `or`, `not` and parentheses. Values: "text" or 'text', numbers, dates (2024-01-31),
`N days ago`, `true`, `false`. A comparison of a date term with `N days ago` reads naturally: `last_human_open < 90
days ago` means "the last human open was more than 90 days ago" (never opened is not included; add
`or last_human_open is empty`).

User text never becomes SQL: the parser builds SQLAlchemy expressions whose values are bound parameters, and a
mistake is reported with the column where it was found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Float, SQLColumnExpression, String, and_, func, not_, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from mailer.db import utcnow
from subscribers.models import Subscriber, Subscription

MAX_EXPRESSION = 2000
MAX_DEPTH = 20
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
""", re.VERBOSE)
_DATE_TERMS = {"subscribed_at", "confirmed_at", "last_human_open", "last_human_click"}
_TEXT_TERMS = {"email", "name", "email_domain"}
_NUMBER_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "contains", "days", "ago", "true", "false"}


class email_domain_of(FunctionElement[str]):
    """The part of an address after '@', lower-cased, in each dialect's own words."""

    type = String()
    inherit_cache = True


@compiles(email_domain_of, "postgresql")
def _domain_pg(element: email_domain_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower(split_part({compiler.process(element.clauses, **kw)}, '@', 2))"


@compiles(email_domain_of)
def _domain_default(element: email_domain_of, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"lower(substr({column}, instr({column}, '@') + 1))"


class number_of(FunctionElement[float]):
    """A custom field's text as a number, NULL when it is not one: a stray "n/a" must not fail the whole query
    (PostgreSQL's CAST would) nor count as 0 (SQLite's would)."""

    type = Float()
    inherit_cache = True


@compiles(number_of, "postgresql")
def _number_pg(element: number_of, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.clauses, **kw)
    return (f"(CASE WHEN {text} ~ '^\\s*-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$' "
            f"THEN CAST({text} AS double precision) END)")


@compiles(number_of)
def _number_default(element: number_of, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.clauses, **kw)
    return (f"(CASE WHEN trim({text}) GLOB '[0-9]*' OR trim({text}) GLOB '-[0-9]*' "
            f"THEN CAST({text} AS REAL) END)")


class SegmentError(ValueError):
    """A located mistake: `column` is 1-based, for a caret under the expression."""

    def __init__(self, message: str, expression: str, column: int) -> None:
        self.column = column
        caret = " " * (column - 1) + "^"
        super().__init__(f"{message} (at column {column})\n  {expression}\n  {caret}")
        self.short = f"{message} (at column {column})"


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    column: int


def _tokens(expression: str) -> list[_Tok]:
    if len(expression) > MAX_EXPRESSION:
        raise SegmentError(f"the expression is longer than {MAX_EXPRESSION} characters", expression[:60], 1)
    out: list[_Tok] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise SegmentError(f"unexpected character {expression[position]!r}", expression, position + 1)
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Tok(kind, match.group(), position + 1))
        position = match.end()
    out.append(_Tok("end", "", len(expression) + 1))
    return out


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    """Recursive descent over the tokens; builds SQLAlchemy clauses as it goes."""

    def __init__(self, expression: str, now: datetime, field_types: Mapping[str, str] | None = None) -> None:
        self.expression = expression
        self.field_types = field_types or {}
        self.tokens = _tokens(expression)
        self.index = 0
        self.now = now
        self.depth = 0

    # helpers
    def peek(self, offset: int = 0) -> _Tok:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def error(self, message: str, token: _Tok | None = None) -> SegmentError:
        return SegmentError(message, self.expression, (token or self.peek()).column)

    def word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() in words

    def take(self) -> _Tok:
        token = self.peek()
        self.index += 1
        return token

    def expect_word(self, word: str) -> None:
        if not self.word(word):
            raise self.error(f"expected '{word}'")
        self.take()

    # grammar
    def parse(self) -> ColumnElement[bool]:
        if self.peek().kind == "end":
            raise self.error("the expression is empty")
        clause = self.or_expr()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        return clause

    def or_expr(self) -> ColumnElement[bool]:
        parts = [self.and_expr()]
        while self.word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else or_(*parts)

    def and_expr(self) -> ColumnElement[bool]:
        parts = [self.not_expr()]
        while self.word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def not_expr(self) -> ColumnElement[bool]:
        if self.word("not"):
            self.take()
            return not_(self.not_expr())
        return self.atom()

    def atom(self) -> ColumnElement[bool]:
        token = self.peek()
        if token.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"more than {MAX_DEPTH} nested parentheses")
            self.take()
            inner = self.or_expr()
            if self.peek().text != ")":
                raise self.error("expected ')'")
            self.take()
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> ColumnElement[bool]:
        term = self.take()
        if term.kind != "word" or term.text.lower() in _KEYWORDS:
            raise self.error("expected a term such as email, name, subscribed_at or fields.city", term)
        name = term.text
        if self.word("is"):
            self.take()
            negate = self.word("not")
            if negate:
                self.take()
            self.expect_word("empty")
            empty = self._empty(name, term)
            return not_(empty) if negate else empty
        if self.word("contains"):
            self.take()
            value = self.value()
            if not isinstance(value, str):
                raise self.error("'contains' takes a text value in quotes")
            column = self._text_column(name, term)
            return func.lower(column).contains(value.lower(), autoescape=True)
        negate = False
        if self.word("not"):
            self.take()
            negate = True
            if not self.word("in"):
                raise self.error("expected 'in' after 'not'")
        if self.word("in"):
            self.take()
            values = self.value_list()
            if not values:
                raise self.error("the list is empty")
            kinds = {float if type(v) is int else type(v) for v in values}  # 9 and 100.5 are both numbers
            if len(kinds) > 1:
                raise self.error("the values in a list must all be of one kind")
            typed = [self._typed(name, term, value) for value in values]
            clause = typed[0][0].in_([value for _column, value in typed])
            return not_(clause) if negate else clause
        op = self.take()
        if op.kind != "op":
            raise self.error("expected an operator (=, !=, <, <=, >, >=, contains, in, is empty)", op)
        column, value = self._typed(name, term, self.value())
        compare: dict[str, ColumnElement[bool]] = {
            "=": column == value, "!=": column != value, "<": column < value, "<=": column <= value,
            ">": column > value, ">=": column >= value}
        return compare[op.text]

    def value_list(self) -> list[Any]:
        if self.peek().text != "[":
            raise self.error("expected '[' to start a list")
        self.take()
        values = [self.value()]
        while self.peek().text == ",":
            self.take()
            values.append(self.value())
        if self.peek().text != "]":
            raise self.error("expected ']' to end the list")
        self.take()
        return values

    def value(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "date":
            try:
                return datetime.combine(date.fromisoformat(token.text), datetime.min.time(), tzinfo=UTC)
            except ValueError:
                raise self.error(f"{token.text} is not a date", token) from None
        if token.kind == "number":
            if self.word("days"):
                self.take()
                self.expect_word("ago")
                return self.now - timedelta(days=float(token.text))
            number = float(token.text)
            return int(number) if number.is_integer() and "." not in token.text else number
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return token.text.lower() == "true"
        raise self.error("expected a value: \"text\", a number, a date (2024-01-31), N days ago, true or false",
                         token)

    # terms
    def _typed(self, name: str, term: _Tok, value: Any) -> tuple[SQLColumnExpression[Any], Any]:
        """The column to compare and the value to compare it with. A custom field defined as a number compares
        numbers (`fields.age > "17"` too); a date (2024-01-31, N days ago) compares with a field's text as
        'YYYY-MM-DD', the way a date field is stored, whose text order is time order; a field defined as a date
        takes nothing else."""
        if name.lower().startswith("fields."):
            field = self._field(name, term)
            kind = self.field_types.get(field)
            if kind == "number":
                number = _as_number(value)
                if number is None:
                    raise self.error(f"{name} is a number: compare it with a number, e.g. 42", term)
                return number_of(_field_text(field)), float(number)  # bound as a float in every list
            if isinstance(value, datetime):
                return _field_text(field), value.date().isoformat()
            if kind == "date" and not (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
                raise self.error(f"{name} is a date: compare it with a date (2024-01-31) or N days ago", term)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return number_of(_field_text(field)), float(value)
        return self._column_for(name, term, value), value

    def _column_for(self, name: str, term: _Tok, value: Any) -> SQLColumnExpression[Any]:
        lowered = name.lower()
        if lowered.startswith("fields."):
            field = self._field(name, term)
            if isinstance(value, bool):
                return _field_bool(field)
            if isinstance(value, int | float):
                return number_of(_field_text(field))
            return _field_text(field)
        if lowered in _DATE_TERMS:
            if not isinstance(value, datetime):
                raise self.error(f"{name} is a date: compare it with a date (2024-01-31) or N days ago", term)
            return self._date_column(lowered)
        if lowered in _TEXT_TERMS:
            if not isinstance(value, str):
                raise self.error(f"{name} is text: put the value in quotes", term)
            return self._text_column(name, term)
        raise self._unknown(name, term)

    def _text_column(self, name: str, term: _Tok) -> SQLColumnExpression[Any]:
        lowered = name.lower()
        if lowered == "email":
            return Subscriber.email
        if lowered == "name":
            return Subscriber.name
        if lowered == "email_domain":
            return email_domain_of(Subscriber.email)
        if lowered.startswith("fields."):
            return _field_text(self._field(name, term))
        raise self._unknown(name, term) if lowered not in _DATE_TERMS else self.error(f"{name} is a date", term)

    def _date_column(self, lowered: str) -> SQLColumnExpression[Any]:
        return {"subscribed_at": Subscription.created_at, "confirmed_at": Subscription.confirmed_at,
                "last_human_open": Subscriber.last_human_open_at,
                "last_human_click": Subscriber.last_human_click_at}[lowered]

    def _empty(self, name: str, term: _Tok) -> ColumnElement[bool]:
        lowered = name.lower()
        if lowered in _DATE_TERMS:
            return self._date_column(lowered).is_(None)
        column = self._text_column(name, term)
        return or_(column.is_(None), column == "")

    def _field(self, name: str, term: _Tok) -> str:
        field = name.split(".", 1)[1]
        if not _FIELD.fullmatch(field):
            raise self.error(f"{field!r} is not a field name (letters, digits and _)", term)
        return field

    def _unknown(self, name: str, term: _Tok) -> SegmentError:
        return self.error(f"unknown term {name!r}: use email, name, email_domain, subscribed_at, confirmed_at, "
                          "last_human_open, last_human_click or fields.NAME", term)


def _as_number(value: Any) -> int | float | None:
    """A number, or text that is one ("42"), as a number; anything else None."""
    if isinstance(value, bool | datetime):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        return float(value) if "." in value else int(value)
    return None


def _field_text(field: str) -> ColumnElement[str]:
    """A custom field (in the subscriber's JSON attributes) as text; SQLAlchemy leaves these accessors untyped."""
    return cast(ColumnElement[str], Subscriber.attributes[field].as_string())


def _field_bool(field: str) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], Subscriber.attributes[field].as_boolean())


def compile_segment(expression: str, now: datetime | None = None,
                    field_types: Mapping[str, str] | None = None) -> ColumnElement[bool]:
    """The expression as a WHERE clause over Subscriber joined with the list's Subscription.

    `field_types` maps the list's custom fields to their type (subscribers.fields.types_of): a field defined as a
    "number" or a "date" is compared as one."""
    return _Parser(expression, now or utcnow(), field_types).parse()

