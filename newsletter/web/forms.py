"""A posted form, read once per request: urlencoded bodies parsed by the standard library.

Starlette parses `application/x-www-form-urlencoded` through python-multipart's streaming callbacks, a few
Python calls per byte range: about a fifth of the CPU of answering a sign-up (bench/web.py, cProfile). A public
form's body is a few hundred bytes, already bounded by BodyLimitMiddleware, so it is read whole and split by
`parse_qsl`, which decodes it the way Starlette does (names and values unquoted as UTF-8 from Latin-1 text, blank
values kept). Anything else (multipart, with files) is Starlette's. The CSRF check and the handler share the one
parse: it is kept in the request's scope.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from starlette.datastructures import FormData, UploadFile

URLENCODED = "application/x-www-form-urlencoded"
MAX_FIELDS = 1000  # Starlette's own limit, kept: a body within the size limit can still hold thousands of "&"
_KEY = "newsletter.form"


async def read_form(request: Request) -> FormData:
    """The request's form (the same object for every caller); 400 for an urlencoded body with too many fields."""
    form = request.scope.get(_KEY)
    if isinstance(form, FormData):
        return form
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() == URLENCODED:
        body = await request.body()
        try:
            fields: list[tuple[str, str | UploadFile]] = list(parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                                                                         max_num_fields=MAX_FIELDS))
        except ValueError as exc:  # parse_qsl's "too many fields"
            raise HTTPException(status_code=400, detail="Too many form fields.") from exc
        form = FormData(fields)
    else:
        form = await request.form()
    request.scope[_KEY] = form
    return form
