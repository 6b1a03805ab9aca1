"""Users, passwords and bearer tokens.

Passwords are hashed with argon2id. Tokens are 256-bit random strings; only their SHA-256
is stored (a token is already high-entropy, so a slow hash would buy nothing and cost every
request). Tokens expire and can be revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Row, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pier.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from pier.models import TokenView, UserCreate, UserView
from pier.services.context import Principal, ServiceContext
from pier.store.tables import jobs, project_members, projects, tokens, users

__all__ = [
    "BootstrapResult",
    "authenticate_token",
    "bootstrap",
    "cached_principal",
    "create_token",
    "create_user",
    "get_user",
    "issue_token_for",
    "list_tokens",
    "list_users",
    "revoke_token",
]

TOKEN_PREFIX = "pier_"
DEFAULT_PROJECT = "default"
_hasher = PasswordHasher()
# Verifying against a dummy hash when the user does not exist keeps the answer time the
# same for unknown users and wrong passwords.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_view(conn: Connection, row: Row[tuple[object, ...]]) -> UserView:
    names = conn.execute(
        select(projects.c.id, projects.c.name)
        .join(project_members, project_members.c.project_id == projects.c.id)
        .where(project_members.c.user_id == row.id)
        .order_by(projects.c.name)
    ).all()
    by_id = {p.id: p.name for p in names}
    return UserView(
        id=row.id,
        name=row.name,
        is_admin=row.is_admin,
        email=row.email,
        default_project=by_id.get(row.default_project_id),
        projects=[p.name for p in names],
        created_at=row.created_at,
    )


def _insert_user(
    conn: Connection, ctx: ServiceContext, body: UserCreate, default_project_id: str | None
) -> str:
    user_id = str(uuid.uuid4())
    try:
        with conn.begin_nested():
            conn.execute(
                insert(users).values(
                    id=user_id,
                    name=body.name,
                    password_hash=_hasher.hash(body.password),
                    is_admin=body.is_admin,
                    email=body.email,
                    default_project_id=default_project_id,
                    created_at=ctx.clock(),
                )
            )
    except IntegrityError:
        raise Conflict(f"user '{body.name}' already exists", loc=["body", "name"]) from None
    return user_id


def create_user(ctx: ServiceContext, caller: Principal, body: UserCreate) -> UserView:
    if not caller.is_admin:
        raise Forbidden("only an admin can create users")
    with ctx.db.write() as conn:
        project_ids: list[str] = []
        for i, name in enumerate(body.projects):
            pid = conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar()
            if pid is None:
                raise Invalid(f"project '{name}' does not exist", loc=["body", "projects", i])
            project_ids.append(pid)
        user_id = _insert_user(conn, ctx, body, project_ids[0] if project_ids else None)
        for pid in project_ids:
            conn.execute(insert(project_members).values(project_id=pid, user_id=user_id))
        row = conn.execute(select(users).where(users.c.id == user_id)).one()
        return _user_view(conn, row)


def list_users(ctx: ServiceContext, caller: Principal) -> list[UserView]:
    if not caller.is_admin:
        raise Forbidden("only an admin can list users")
    with ctx.db.read() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [_user_view(conn, r) for r in rows]


def get_user(ctx: ServiceContext, caller: Principal, name: str | None = None) -> UserView:
    """The caller (``name`` None) or, for admins, any user."""
    with ctx.db.read() as conn:
        if name is None or name == caller.name:
            row = conn.execute(select(users).where(users.c.id == caller.user_id)).first()
        elif caller.is_admin:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        else:
            row = None
        if row is None:
            raise NotFound(f"user '{name}' not found")
        return _user_view(conn, row)


def _token_view(row: Row[tuple[object, ...]], user: str, token: str | None = None) -> TokenView:
    return TokenView(
        id=row.id,
        token=token,
        user=user,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def create_token(
    ctx: ServiceContext,
    username: str,
    password: str,
    *,
    name: str | None = None,
    expires_in: int | None = None,
) -> TokenView:
    """Exchange a username and password for a new bearer token."""
    with ctx.db.read() as conn:
        user = conn.execute(select(users).where(users.c.name == username)).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        user = None
    if user is None:
        raise Unauthenticated("wrong username or password")
    return _issue_token(ctx, user.id, user.name, name=name, expires_in=expires_in)


def _issue_token(
    ctx: ServiceContext,
    user_id: str,
    username: str,
    *,
    name: str | None = None,
    expires_in: int | None = None,
) -> TokenView:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = ctx.clock()
    token_id = str(uuid.uuid4())
    with ctx.db.write() as conn:
        conn.execute(
            insert(tokens).values(
                id=token_id,
                user_id=user_id,
                token_hash=_token_hash(token),
                name=name,
                created_at=now,
                expires_at=now + (expires_in or ctx.token_ttl_seconds),
            )
        )
        row = conn.execute(select(tokens).where(tokens.c.id == token_id)).one()
    return _token_view(row, username, token)


def cached_principal(ctx: ServiceContext, token: str) -> Principal | None:
    """The principal from the cache, without touching the store (None: ask the store)."""
    return ctx.principals.get(_token_hash(token), ctx.clock())


def authenticate_token(ctx: ServiceContext, token: str) -> Principal:
    """The principal behind a bearer token; expired, revoked and unknown tokens all fail the
    same way."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        raise Unauthenticated("invalid or expired token")
    token_hash = _token_hash(token)
    now = ctx.clock()
    cached = ctx.principals.get(token_hash, now)
    if cached is not None:
        return cached
    with ctx.db.read() as conn:
        row = conn.execute(
            select(
                users.c.id,
                users.c.name,
                users.c.is_admin,
                users.c.default_project_id,
                tokens.c.id.label("token_id"),
                tokens.c.expires_at,
            )
            .join(tokens, tokens.c.user_id == users.c.id)
            .where(
                and_(
                    tokens.c.token_hash == token_hash,
                    tokens.c.revoked_at.is_(None),
                    tokens.c.expires_at > now,
                )
            )
        ).first()
    if row is None:
        raise Unauthenticated("invalid or expired token")
    principal = Principal(row.id, row.name, row.is_admin, row.default_project_id, row.token_id)
    ctx.principals.put(token_hash, principal, row.expires_at, now)
    return principal


def list_tokens(ctx: ServiceContext, caller: Principal) -> list[TokenView]:
    with ctx.db.read() as conn:
        rows = conn.execute(
            select(tokens).where(tokens.c.user_id == caller.user_id).order_by(tokens.c.created_at)
        ).all()
    return [_token_view(r, caller.name) for r in rows]


def revoke_token(ctx: ServiceContext, caller: Principal, token_id: str) -> None:
    """Revoke one of the caller's tokens (an admin may revoke anyone's); ``current`` means
    the token of this request."""
    if token_id == "current":
        if caller.token_id is None:
            raise NotFound("this request did not use a token")
        token_id = caller.token_id
    with ctx.db.write() as conn:
        stmt = update(tokens).where(tokens.c.id == token_id).where(tokens.c.revoked_at.is_(None))
        if not caller.is_admin:
            stmt = stmt.where(tokens.c.user_id == caller.user_id)
        if conn.execute(stmt.values(revoked_at=ctx.clock())).rowcount == 0:
            raise NotFound(f"token '{token_id}' not found")
    ctx.principals.drop_token(token_id)


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    admin_created: bool
    admin_name: str
    admin_password: str | None
    """Set only when it was generated here: printed once, never stored in clear."""
    token: str | None
    """A fresh admin token for the local CLI, when the admin was just created."""


def bootstrap(ctx: ServiceContext, admin_name: str, admin_password: str | None) -> BootstrapResult:
    """First start: create the admin user and the ``default`` project. Idempotent."""
    with ctx.db.write() as conn:
        project_id = conn.execute(
            select(projects.c.id).where(projects.c.name == DEFAULT_PROJECT)
        ).scalar()
        if project_id is None:
            project_id = str(uuid.uuid4())
            conn.execute(
                insert(projects).values(
                    id=project_id,
                    name=DEFAULT_PROJECT,
                    description="Created on first start",
                    gpu_quota=0.0,
                    node_pools=[],
                    created_at=ctx.clock(),
                )
            )
        if conn.execute(select(users.c.id).where(users.c.name == admin_name)).first():
            return BootstrapResult(False, admin_name, None, None)
        generated = admin_password is None
        password = admin_password or secrets.token_urlsafe(18)
        body = UserCreate(name=admin_name, password=password, is_admin=True)
        user_id = _insert_user(conn, ctx, body, project_id)
        conn.execute(
            insert(project_members).values(project_id=project_id, user_id=user_id, role="admin")
        )
    token = _issue_token(ctx, user_id, admin_name, name="local-cli")
    return BootstrapResult(True, admin_name, password if generated else None, token.token)


def issue_token_for(ctx: ServiceContext, username: str, *, name: str | None = None) -> str:
    """A new token for an existing user, without a password (server-side bootstrap only)."""
    with ctx.db.read() as conn:
        user = conn.execute(select(users.c.id).where(users.c.name == username)).first()
    if user is None:
        raise NotFound(f"user '{username}' not found")
    token = _issue_token(ctx, user.id, username, name=name).token
    assert token is not None
    return token


__all__ += ["change_password", "delete_user", "set_admin"]


def _require_user(conn: Connection, name: str) -> Row[tuple[object, ...]]:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        raise NotFound(f"user '{name}' not found", loc=["body", "username"])
    return row


def change_password(ctx: ServiceContext, caller: Principal, name: str, password: str) -> None:
    """A user changes their own password; an admin anyone's. The calling API has checked
    the password against its rules."""
    if name != caller.name and not caller.is_admin:
        raise Forbidden("only an admin can change another user's password")
    with ctx.db.write() as conn:
        row = _require_user(conn, name)
        conn.execute(
            update(users).where(users.c.id == row.id).values(password_hash=_hasher.hash(password))
        )


def set_admin(ctx: ServiceContext, caller: Principal, name: str, is_admin: bool) -> None:
    if not caller.is_admin:
        raise Forbidden("only an admin can grant or revoke admin rights")
    with ctx.db.write() as conn:
        row = _require_user(conn, name)
        conn.execute(update(users).where(users.c.id == row.id).values(is_admin=is_admin))
    ctx.principals.clear()


def delete_user(ctx: ServiceContext, caller: Principal, name: str) -> None:
    """Remove a user (admins only; never an admin). Their tokens and memberships go; a user
    who owns jobs keeps a disabled record under a freed name, so the jobs keep an owner."""
    if not caller.is_admin:
        raise Forbidden("only an admin can remove users")
    with ctx.db.write() as conn:
        row = _require_user(conn, name)
        if row.is_admin:
            raise Forbidden(f"user '{name}' is an admin; revoke admin rights first")
        owns_jobs = conn.execute(select(jobs.c.id).where(jobs.c.owner_id == row.id).limit(1))
        if owns_jobs.first() is None:
            conn.execute(delete(users).where(users.c.id == row.id))
        else:
            conn.execute(delete(tokens).where(tokens.c.user_id == row.id))
            conn.execute(delete(project_members).where(project_members.c.user_id == row.id))
            conn.execute(
                update(users)
                .where(users.c.id == row.id)
                .values(
                    name=f"{name[:40]}.removed.{row.id[:8]}",
                    password_hash="!",  # matches no password: argon2 rejects it outright
                    default_project_id=None,
                )
            )
    ctx.principals.clear()
