"""Custom fields: definitions are checked, values are stored typed, and hostile values are refused with a message."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from mailer.db import new_session, session_scope
from subscribers import audience, fields, importer, mailing_lists, service, staff
from subscribers.fields import FieldType, apply_values, coerce, define_field, fields_of, remove_field
from subscribers.models import ConsentEvent, ConsentKind, ConsentSource, Subscriber, Subscription
from subscribers.segments import SegmentError
from subscribers.service import ServiceError


@pytest.fixture
def weekly(db_url: str) -> str:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        mailing_lists.create_list(session, "daily", "Daily", double_opt_in=False)
    return db_url


def _define(name: str, type_: str, **kwargs: object) -> None:
    with session_scope() as session:
        define_field(session, mailing_lists.get_list(session, "weekly"), name, type_, **kwargs)  # type: ignore[arg-type]


def test_definitions_are_checked_and_kept_in_order(weekly: str) -> None:
    _define("City", "text")
    _define("age", "number", default="18", editable=True)
    _define("plan", "oneof", options=["Free", "Pro"], default="pro")
    _define("born", "date")
    _define("vip", "yesno", default="yes")
    with session_scope() as session:
        listed = fields_of(session, mailing_lists.get_list(session, "weekly").id)
        assert [(f.name, f.type, f.default) for f in listed] == [
            ("city", "text", None), ("age", "number", 18), ("plan", "oneof", "Pro"), ("born", "date", None),
            ("vip", "yesno", True)]
        assert listed[1].subscriber_editable and not listed[0].subscriber_editable
        assert fields.field_names(session, listed[0].list_id) == {"city", "age", "plan", "born", "vip"}
        assert fields.field_names(session, mailing_lists.get_list(session, "daily").id) == set()


@pytest.mark.parametrize(("name", "type_", "kwargs", "message"), [
    ("city", "text", {}, "already has a field named 'city'"),
    ("email", "text", {}, "'email' is reserved"),
    ("status", "text", {}, "reserved"),
    ("2fast", "text", {}, "is not a field name"),
    ("a b", "text", {}, "is not a field name"),
    ("x" * 65, "text", {}, "is not a field name"),
    ("ok", "colour", {}, "unknown field type 'colour'"),
    ("ok", "text", {"options": ["a"]}, "only a oneof field takes options"),
    ("ok", "oneof", {}, "needs at least one option"),
    ("ok", "oneof", {"options": ["a", "A"]}, "given twice"),
    ("ok", "oneof", {"options": [str(i) for i in range(51)]}, "at most 50 options"),
    ("ok", "oneof", {"options": ["x" * 101]}, "at most 100 characters"),
    ("ok", "oneof", {"options": ["a\nb"]}, "on one line"),
    ("ok", "number", {"default": "lots"}, "fields.ok: 'lots' is not a number"),
    ("ok", "oneof", {"options": ["a"], "default": "b"}, "is not one of: a"),
])
def test_bad_definitions_are_refused(weekly: str, name: str, type_: str, kwargs: dict[str, object],
                                     message: str) -> None:
    _define("city", "text")
    with pytest.raises(ServiceError, match=message.replace("(", r"\(")):
        _define(name, type_, **kwargs)


def test_at_most_a_hundred_fields_and_removal(weekly: str) -> None:
    for i in range(fields.MAX_FIELDS):
        _define(f"f{i}", "text")
    with pytest.raises(ServiceError, match="100 fields"):
        _define("one_more", "text")
    with session_scope() as session:
        weekly_list = mailing_lists.get_list(session, "weekly")
        remove_field(session, weekly_list, "f0")
        with pytest.raises(ServiceError, match="no field named"):
            remove_field(session, weekly_list, "f0")
        assert len(fields_of(session, weekly_list.id)) == fields.MAX_FIELDS - 1


@pytest.mark.parametrize(("type_", "raw", "expected"), [
    ("text", "  Oslo ", "Oslo"), ("text", "", None), ("number", "42", 42), ("number", "-3.5", -3.5),
    ("number", " 7 ", 7), ("date", "2024-02-29", "2024-02-29"), ("yesno", "Yes", True), ("yesno", "0", False),
    ("yesno", "   ", None), ("oneof", "pro", "Pro"),
])
def test_coerce_stores_typed_values(type_: str, raw: str, expected: object) -> None:
    field = _field(type_)
    value = coerce(field, raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("type_", "raw", "message"), [
    ("number", "abc", "fields.f: 'abc' is not a number"),
    ("number", "1e5", "is not a number"), ("number", "1,5", "is not a number"),
    ("number", "9" * 16, "is not a number"), ("number", "NaN", "is not a number"),
    ("number", "١٢", "is not a number"),  # other scripts' digits are not ours
    ("date", "2023-02-29", "is not a date"), ("date", "31/01/2024", "is not a date (YYYY-MM-DD)"),
    ("date", "2024-1-1", "is not a date"), ("yesno", "maybe", "is not yes or no"),
    ("oneof", "Gold", "is not one of: Free, Pro"), ("text", "x" * 501, "longer than 500 characters"),
])
def test_coerce_refuses_with_a_clear_message(type_: str, raw: str, message: str) -> None:
    with pytest.raises(ServiceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        coerce(_field(type_), raw)


def test_a_huge_value_is_named_short_in_the_message() -> None:
    with pytest.raises(ServiceError) as caught:
        coerce(_field("number"), "z" * 400)
    assert len(str(caught.value)) < 120


def _field(type_: str) -> fields.ListField:
    options = ["Free", "Pro"] if type_ == FieldType.ONEOF else []
    return fields.ListField(name="f", type=type_, options=options)


def _subscriber(session: object, email: str, slug: str = "weekly") -> Subscriber:
    outcome = service.subscribe(session, mailing_lists.get_list(session, slug), email,  # type: ignore[arg-type]
                                source=ConsentSource.ADMIN, confirmed=True, consent_note="test")
    assert outcome.subscription is not None
    found = session.get(Subscriber, outcome.subscription.subscriber_id)  # type: ignore[attr-defined]
    assert isinstance(found, Subscriber)
    return found


def test_apply_values_stores_the_valid_and_refuses_the_rest(weekly: str) -> None:
    _define("age", "number", editable=True)
    _define("city", "text", editable=True)
    _define("secret", "text")
    with session_scope() as session:
        define_field(session, mailing_lists.get_list(session, "daily"), "team", "text", editable=True)
        person = _subscriber(session, "ann@example.com")
        weekly_id = mailing_lists.get_list(session, "weekly").id
        errors = apply_values(session, person, [weekly_id],
                              {"age": "forty", "city": "Oslo", "secret": "x", "team": "red", "nope" * 100: "1"},
                              editable_only=True, source=ConsentSource.FORM)
        assert errors["age"] == "fields.age: 'forty' is not a number"
        assert "not a field you can edit" in errors["secret"] and "not a field" in errors["team"]
        assert len(errors) == 4 and all(len(key) <= 64 for key in errors)
        assert person.attributes == {"city": "Oslo"}
        assert apply_values(session, person, [weekly_id], {"secret": "x", "age": "40", "city": ""},
                            editable_only=False) == {}
        assert person.attributes == {"secret": "x", "age": 40}
    with session_scope() as session:
        stored = session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
        assert stored is not None and stored.attributes == {"secret": "x", "age": 40}
        events = session.scalars(select(ConsentEvent).where(ConsentEvent.kind == ConsentKind.PREFERENCES)).all()
        assert [e.detail for e in events] == [{"changed": ["fields.city"]}]  # only the change with a source


def test_a_name_defined_by_two_lists_must_fit_both(weekly: str) -> None:
    _define("size", "number", editable=True)
    with session_scope() as session:
        define_field(session, mailing_lists.get_list(session, "daily"), "size", "oneof", options=["1", "2"],
                     editable=True)
        person = _subscriber(session, "bob@example.com")
        ids = [mailing_lists.get_list(session, s).id for s in ("weekly", "daily")]
        assert "is not one of" in apply_values(session, person, ids, {"size": "3"}, editable_only=True)["size"]
        assert apply_values(session, person, ids, {"size": "2"}, editable_only=True) == {}
        assert person.attributes == {"size": 2}


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(text)
    return path


def test_import_defines_text_fields_and_reports_values_that_do_not_fit(weekly: str, tmp_path: Path) -> None:
    _define("age", "number")
    _define("vip", "yesno")
    path = _csv(tmp_path, "email,name,Age,VIP,Home Town,status,2nd\n"
                          "ann@example.com,Ann,41,yes,Oslo,confirmed,x\n"
                          "bob@example.com,Bob,old,no,Rome,,\n"
                          "cy@example.com,Cy,,maybe,Lima,,\n"
                          "di@example.com,Di,7.5,,,,\n")
    result = importer.import_csv(new_session, path, "weekly")
    assert (result.imported, result.errors) == (2, 2)
    reasons = {int(r["line"]): r["reason"] for r in importer.read_report(result.report_path)}
    assert reasons == {3: "fields.age: 'old' is not a number; row not imported",
                       4: "fields.vip: 'maybe' is not yes or no; row not imported"}
    with session_scope() as session:
        weekly_id = mailing_lists.get_list(session, "weekly").id
        assert [(f.name, f.type) for f in fields_of(session, weekly_id)] == [
            ("age", "number"), ("vip", "yesno"), ("home_town", "text"), ("f_2nd", "text")]
        people = {s.email: s.attributes for s in session.scalars(select(Subscriber))}
    assert people == {"ann@example.com": {"age": 41, "vip": True, "home_town": "Oslo", "f_2nd": "x"},
                      "di@example.com": {"age": 7.5}}


def test_import_of_a_file_with_too_many_new_columns_is_refused(weekly: str, tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(fields.MAX_FIELDS + 1))
    path = _csv(tmp_path, f"email,{header}\nann@example.com{',' * (fields.MAX_FIELDS + 1)}\n")
    with pytest.raises(importer.ImportFileError, match="limit of 100 fields"):
        importer.import_csv(new_session, path, "weekly")
    with session_scope() as session:
        assert fields_of(session, mailing_lists.get_list(session, "weekly").id) == []


def test_export_has_the_fields_in_order_with_defaults_and_imports_back(weekly: str, tmp_path: Path) -> None:
    _define("plan", "oneof", options=["Free", "Pro"], default="Free")
    _define("vip", "yesno", default="no")
    _define("note", "text")
    path = _csv(tmp_path, "email,vip,plan,note,extra\nann@example.com,yes,,=1+1,e\nbob@example.com,,Pro,,\n")
    importer.import_csv(new_session, path, "weekly")
    with session_scope() as session:
        remove_field(session, mailing_lists.get_list(session, "weekly"), "extra")  # its values stay, untyped
        out = io.StringIO()
        importer.export_csv(session, "weekly", out)
    rows = [line.split(",")[:1] + line.split(",")[5:] for line in out.getvalue().splitlines()]
    assert rows == [["email", "plan", "vip", "note", "attributes"],
                    ["ann@example.com", "Free", "yes", "'=1+1", "extra=e"],
                    ["bob@example.com", "Pro", "no", "", ""]]
    exported = tmp_path / "export.csv"
    exported.write_text(out.getvalue())
    with session_scope() as session:
        session.execute(delete(Subscription))
        session.execute(delete(Subscriber))
    back = importer.import_csv(new_session, exported, "weekly")
    assert (back.imported, back.errors) == (2, 0)
    with session_scope() as session:
        ann = session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
        assert ann is not None and ann.attributes == {"plan": "Free", "vip": True, "note": "=1+1"}


def test_segments_compare_number_and_date_fields_as_such(weekly: str) -> None:
    _define("age", "number")
    _define("born", "date")
    _define("code", "text")
    with session_scope() as session:
        weekly_list = mailing_lists.get_list(session, "weekly")
        for email, age, born in (("a@example.com", "9", "1999-12-31"), ("b@example.com", "10", "2000-01-01"),
                                 ("c@example.com", "100.5", "2024-05-01")):
            person = _subscriber(session, email)
            assert apply_values(session, person, [weekly_list.id], {"age": age, "born": born, "code": age},
                                editable_only=False) == {}
        list_id = weekly_list.id

    def count(expression: str) -> int:
        with session_scope() as session:
            return audience.count(session, list_id, expression)

    assert count("fields.age > 9") == 2 and count('fields.age > "9"') == 2  # as numbers, not as text
    assert count('fields.code > "9"') == 0  # a text field compares as text ("10" < "9")
    assert count("fields.age in [9, 100.5]") == 2 and count("fields.code in [9, 100.5]") == 2
    assert count("fields.born < 2000-01-01") == 1 and count('fields.born >= "2000-01-01"') == 2
    assert count("fields.born > 365 days ago") == 0 and count("fields.born < 1 days ago") == 3
    for expression, message in (('fields.age > "old"', "fields.age is a number"),
                                ("fields.born = 5", "fields.born is a date"),
                                ('fields.born = "soon"', "fields.born is a date")):
        with pytest.raises(SegmentError, match=message), session_scope() as session:
            audience.create_segment(session, mailing_lists.get_list(session, "weekly"), "s", expression)


def test_staff_edits_of_a_defined_field_are_typed_and_checked(weekly: str) -> None:
    _define("age", "number")
    _define("vip", "yesno")
    with session_scope() as session:
        person = _subscriber(session, "staffed@example.com")
        assert staff.update_subscriber(session, person.id, attributes={"age": "41", "vip": "yes", "note": "x"},
                                       actor="admin@example.com") == ["fields.age", "fields.vip", "fields.note"]
        assert person.attributes == {"age": 41, "vip": True, "note": "x"}
        assert staff.update_subscriber(session, person.id, attributes={"age": "41", "vip": "Yes"},
                                       actor="admin@example.com") == []  # the same values, typed
        with pytest.raises(ServiceError, match=r"fields\.age: 'old' is not a number"):
            staff.update_subscriber(session, person.id, attributes={"age": "old"}, actor="admin@example.com")
