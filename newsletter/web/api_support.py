"""What the API's resource modules share: its error answer and the list a path or body names."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.orm import Session

from subscribers import mailing_lists, service
from subscribers.models import MailingList


def bad(message: str, status: int = 400) -> HTTPException:
    """An error the API answers as `{"error": message}` (api.py's handler turns the exception into that body)."""
    return HTTPException(status_code=status, detail=message)


def list_or_404(session: Session, slug: str) -> MailingList:
    try:
        return mailing_lists.get_list(session, slug)
    except service.ServiceError as exc:
        raise bad(str(exc), 404) from exc
