"""Custom fields of a list: their definitions, and a raw text value turned into the typed value that is stored.

A list defines fields (a name, a type, the options of a "one of", a default, whether subscribers may edit it on
their preferences page). The values live in `Subscriber.attributes` under the field's name, stored typed so that
segments compare numbers as numbers and dates in order: a number is a JSON number, a date 'YYYY-MM-DD', yes/no a
boolean, a "one of" the option as it was defined. Every front end (CLI, admin, API, CSV import, preferences page)
goes through here, so a value refused by one is refused by all, with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from subscribers.models import ConsentKind, ConsentSource, ListField, MailingList, Subscriber
from subscribers.service import ServiceError, record_consent


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    YESNO = "yesno"
    ONEOF = "oneof"


Json = str | int | float | bool | None
Converter = Callable[[str], Json]

MAX_FIELDS = 100  # per list: a CSV with thousands of columns must not define thousands of fields
MAX_VALUE = 500  # characters of any value typed or imported into a field
MAX_OPTIONS = 50
MAX_OPTION = 100
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# The subscriber's own columns and the export's: a field of that name would be ambiguous in a CSV or a template.
RESERVED = frozenset({"email", "name", "status", "subscribed_at", "confirmed_at", "attributes", "id", "list",
                      "created_at", "fields", "email_domain", "last_human_open", "last_human_click"})
_NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,6})?")  # what segments read as a number, without float noise
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YES = frozenset({"yes", "y", "true", "1", "on"})
_NO = frozenset({"no", "n", "false", "0", "off"})
TYPES = ", ".join(t.value for t in FieldType)


def _shown(text: str, limit: int = 40) -> str:
    """A value quoted for a message, cut short: a message must stay readable whatever was sent."""
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def converter(name: str, type_: FieldType, options: Sequence[str] = ()) -> Converter:
    """A function from raw text to the stored value (None: empty, clear it), raising ServiceError with a message
    that names the field. Built once per field, so the import converts a million cells without looking anything
    up."""
    label = f"fields.{name}"
    canonical = {option.lower(): option for option in options}

    def convert(raw: str) -> Json:
        value = raw.strip()
        if not value:
            return None
        if len(value) > MAX_VALUE:
            raise ServiceError(f"{label}: longer than {MAX_VALUE} characters")
        if type_ is FieldType.TEXT:
            return value
        if type_ is FieldType.NUMBER:
            if not _NUMBER.fullmatch(value):
                raise ServiceError(f"{label}: {_shown(value)} is not a number")
            return float(value) if "." in value else int(value)
        if type_ is FieldType.DATE:
            try:
                if not _DATE.fullmatch(value):
                    raise ValueError(value)
                return date.fromisoformat(value).isoformat()
            except ValueError:
                raise ServiceError(f"{label}: {_shown(value)} is not a date (YYYY-MM-DD)") from None
        if type_ is FieldType.YESNO:
            lowered = value.lower()
            if lowered in _YES:
                return True
            if lowered in _NO:
                return False
            raise ServiceError(f"{label}: {_shown(value)} is not yes or no")
        found = canonical.get(value.lower())
        if found is None:
            shown = ", ".join(list(options)[:10]) + (", …" if len(options) > 10 else "")
            raise ServiceError(f"{label}: {_shown(value)} is not one of: {shown}")
        return found

    return convert


def coerce(field: ListField, raw: str) -> Json:
    """The typed value of `raw` for this field (None when empty), or ServiceError saying what is wrong."""
    return converter(field.name, FieldType(field.type), field.options or ())(raw)


def display(value: Any) -> str:
    """A stored value as text, for a CSV cell or a form input."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# Definitions ----------------------------------------------------------------------------------------------------

def check_name(name: str) -> str:
    clean = name.strip().lower()
    if not NAME.fullmatch(clean):
        raise ServiceError(f"{_shown(name)} is not a field name: a letter, then letters, digits or _ "
                           "(at most 64)")
    if clean in RESERVED:
        raise ServiceError(f"'{clean}' is reserved (the subscriber's own columns): choose another field name")
    return clean


def _check_options(type_: FieldType, options: Iterable[str]) -> list[str]:
    clean = [option.strip() for option in options if option.strip()]
    if type_ is not FieldType.ONEOF:
        if clean:
            raise ServiceError("only a oneof field takes options")
        return []
    if not clean:
        raise ServiceError("a oneof field needs at least one option")
    if len(clean) > MAX_OPTIONS:
        raise ServiceError(f"a oneof field takes at most {MAX_OPTIONS} options")
    seen: set[str] = set()
    for option in clean:
        if len(option) > MAX_OPTION or any(ord(c) < 32 for c in option):
            raise ServiceError(f"option {_shown(option)}: at most {MAX_OPTION} characters, on one line")
        if option.lower() in seen:
            raise ServiceError(f"option {_shown(option)} is given twice")
        seen.add(option.lower())
    return clean


def define_field(session: Session, mailing_list: MailingList, name: str, type: str, *,
                 options: Iterable[str] = (), default: str | None = None, editable: bool = False) -> ListField:
    """Add a field to a list, after checking its name, type, options and default."""
    clean = check_name(name)
    try:
        type_ = FieldType(type.strip().lower())
    except ValueError:
        raise ServiceError(f"unknown field type {_shown(type)}: use {TYPES}") from None
    allowed = _check_options(type_, options)
    typed_default = converter(clean, type_, allowed)(default) if default is not None else None
    if session.scalar(select(ListField.id).where(ListField.list_id == mailing_list.id, ListField.name == clean)):
        raise ServiceError(f"The list '{mailing_list.slug}' already has a field named '{clean}'.")
    count, last = session.execute(select(func.count(), func.max(ListField.position))
                                  .where(ListField.list_id == mailing_list.id)).one()
    if count >= MAX_FIELDS:
        raise ServiceError(f"The list '{mailing_list.slug}' has {MAX_FIELDS} fields, the most a list may have.")
    field = ListField(list_id=mailing_list.id, name=clean, type=type_.value, options=allowed, default=typed_default,
                      subscriber_editable=editable, position=(last or 0) + 1)
    session.add(field)
    session.flush()
    return field


def fields_of(session: Session, list_id: int) -> list[ListField]:
    """A list's fields in definition order (the order of the export's columns and of the preferences form)."""
    return list(session.scalars(select(ListField).where(ListField.list_id == list_id)
                                .order_by(ListField.position, ListField.id)))


def field_names(session: Session, list_id: int) -> set[str]:
    """The names a template may use as `subscriber.fields.NAME` for this list."""
    return set(session.scalars(select(ListField.name).where(ListField.list_id == list_id)))


def types_of(session: Session, list_id: int) -> dict[str, FieldType]:
    """Each field's type, for the segment compiler (a number or date field compares as one)."""
    return {name: FieldType(type_) for name, type_ in
            session.execute(select(ListField.name, ListField.type).where(ListField.list_id == list_id))}


def remove_field(session: Session, mailing_list: MailingList, name: str) -> None:
    """Remove a definition. Subscribers' values stay in their attributes (the export lists them as untyped)."""
    field = session.scalar(select(ListField).where(ListField.list_id == mailing_list.id,
                                                   ListField.name == name.strip().lower()))
    if field is None:
        raise ServiceError(f"The list '{mailing_list.slug}' has no field named {_shown(name)}.")
    session.delete(field)
    session.flush()


# Values -----------------------------------------------------------------------------------------------------------

def editable_fields(session: Session, list_ids: Sequence[int]) -> list[ListField]:
    """The fields a subscriber of these lists may edit themselves, one per name, in the lists' order."""
    seen: dict[str, ListField] = {}
    for field in _definitions(session, list_ids):
        if field.subscriber_editable:
            seen.setdefault(field.name, field)
    return list(seen.values())


def definitions_by_name(session: Session, list_ids: Sequence[int]) -> dict[str, list[ListField]]:
    """Every field of these lists by name (a name several lists define has each definition)."""
    found: dict[str, list[ListField]] = {}
    for field in _definitions(session, list_ids):
        found.setdefault(field.name, []).append(field)
    return found


def _definitions(session: Session, list_ids: Sequence[int]) -> list[ListField]:
    if not list_ids:
        return []
    return list(session.scalars(select(ListField).where(ListField.list_id.in_(list_ids))
                                .order_by(ListField.list_id, ListField.position, ListField.id)))


def apply_values(session: Session, subscriber: Subscriber, list_ids: Sequence[int], raw: Mapping[str, str], *,
                 editable_only: bool, source: ConsentSource | None = None, ip: str | None = None,
                 user_agent: str | None = None) -> dict[str, str]:
    """Store the valid values of `raw` (field name -> text; empty text clears the value) among the fields of
    `list_ids` (only those marked editable by subscribers when `editable_only`), and return an error message
    for each name refused: not such a field, or a value that does not fit. A name defined by several of the
    lists must fit each definition. With a `source`, a change is recorded in the consent trail."""
    by_name: dict[str, list[ListField]] = {}
    for field in _definitions(session, list_ids):
        if field.subscriber_editable or not editable_only:
            by_name.setdefault(field.name, []).append(field)
    values = dict(subscriber.attributes or {})
    errors: dict[str, str] = {}
    changed: list[str] = []
    for name, text in raw.items():
        definitions = by_name.get(name)
        if not definitions:
            errors[name[:64]] = (f"fields.{name[:64]}: not a field "
                                 f"{'you can edit' if editable_only else 'of these lists'}")
            continue
        try:
            typed, *_others = [coerce(field, text) for field in definitions]  # each must accept it
        except ServiceError as exc:
            errors[name] = str(exc)
            continue
        old = values.get(name)
        if typed is None:
            if name in values:
                del values[name]
                changed.append(name)
        elif type(old) is not type(typed) or old != typed:
            values[name] = typed
            changed.append(name)
    if changed:
        subscriber.attributes = values
        if source is not None:
            record_consent(session, subscriber.id, None, ConsentKind.PREFERENCES, source=source, ip=ip,
                           user_agent=user_agent, detail={"changed": [f"fields.{name}" for name in changed]})
    return errors


# CSV import -------------------------------------------------------------------------------------------------------

def column_key(column: str) -> str | None:
    """The field a CSV column fills: 'First Name' -> first_name, '2nd phone' -> f_2nd_phone. None for a column
    that names the subscriber's own data or our export's (status, subscribed_at, attributes...): it is ignored, so
    an export imports back."""
    key = re.sub(r"[^a-z0-9_]+", "_", column.strip().lower()).strip("_")
    if key and not key[0].isalpha():
        key = f"f_{key}"
    key = key[:64]
    return key if key and key not in RESERVED else None


def import_columns(session: Session, mailing_list: MailingList, columns: Sequence[tuple[int, str]]
                   ) -> list[tuple[int, str, Converter]]:
    """(index, field name, converter) for the CSV columns at these indexes; a column that names no field of the
    list defines a text field first. Raises ServiceError when that would pass the list's limit of fields."""
    defined = {field.name: field for field in fields_of(session, mailing_list.id)}
    keyed = [(index, key) for index, column in columns if (key := column_key(column)) is not None]
    missing = list(dict.fromkeys(key for _index, key in keyed if key not in defined))
    if len(defined) + len(missing) > MAX_FIELDS:
        raise ServiceError(f"the file has {len(missing)} columns that are not fields of the list "
                           f"'{mailing_list.slug}', which would pass its limit of {MAX_FIELDS} fields")
    for key in missing:
        defined[key] = define_field(session, mailing_list, key, FieldType.TEXT.value)
    return [(index, key, converter(key, FieldType(defined[key].type), defined[key].options or ()))
            for index, key in keyed]
