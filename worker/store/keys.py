"""API keys: ``ng_`` + 32 random bytes (urlsafe base64); only the secret's SHA-256 is stored.

A key is looked up by its hash, so there is nothing to compare in constant
time: an attacker who can time the lookup learns about hashes, not secrets.
"""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import ApiKey, utcnow

KEY_PREFIX = "ng_"
DISPLAY_PREFIX_LENGTH = 12  # "ng_" and 9 characters: enough to tell a user's keys apart


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, owner: str) -> str:
    """Store a new key for ``owner`` and return its secret (shown once, never stored); commits."""
    owner = owner.strip()
    if not owner or len(owner) > 100:
        raise ValueError("owner must be 1 to 100 characters")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(owner=owner, key_hash=hash_key(secret), prefix=secret[:DISPLAY_PREFIX_LENGTH]))
    session.commit()
    return secret


def authenticate(session: Session, secret: str) -> str | None:
    """The owner of ``secret``, or None if it is unknown or revoked."""
    if not secret.startswith(KEY_PREFIX):
        return None
    query = select(ApiKey.owner).where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    return session.scalar(query)


def revoke_key(session: Session, prefix: str) -> int:
    """Revoke the live keys whose display prefix is ``prefix``; returns how many; commits."""
    revoked = session.execute(
        update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
        .returning(ApiKey.id)).all()
    session.commit()
    return len(revoked)
