"""Staff accounts: agents and admins with argon2 password hashes, presence (online/offline) and ticket capacity."""

import re
from datetime import datetime
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utc
from core.settings import get_settings
from ticketing.models import ROLE_ADMIN, ROLE_AGENT, ROLES, StaffUser
from ticketing.service import record_event

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_CAPACITY = 1000
USERNAME = re.compile(r"^[\w.@-]{1,64}$")

_hasher = PasswordHasher()


class StaffError(ValueError):
    """A staff account cannot be created or changed as asked; the message (Chinese) says why."""


def hash_password(password: str) -> str:
    """An argon2id hash of a password (salted; parameters stored in the hash)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches the hash (False for a malformed hash, never an exception)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache
def _dummy_hash() -> str:
    """A hash no password matches, verified for unknown users so they take as long as known ones."""
    return hash_password("\x00unknown-user\x00")


def normalise_username(username: str) -> str:
    """A login name as stored: trimmed and lower-case (StaffError when not 1–64 letters, digits or ._@-)."""
    cleaned = username.strip().lower()
    if not USERNAME.match(cleaned):
        raise StaffError("用户名须为 1-64 个字母、数字或 ._@- 字符")
    return cleaned


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise StaffError(f"密码长度须为 {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} 个字符")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise StaffError(f"角色须为 {' 或 '.join(ROLES)}")


def _check_capacity(capacity: int) -> None:
    if not 0 <= capacity <= MAX_CAPACITY:
        raise StaffError(f"接单上限须在 0-{MAX_CAPACITY} 之间")


def create(
    *,
    db_session: Session,
    username: str,
    password: str,
    role: str = ROLE_AGENT,
    display_name: str | None = None,
    capacity: int | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> StaffUser:
    """Create a staff account (StaffError when the name is taken or a value is not allowed)."""
    username = normalise_username(username)
    _check_password(password)
    _check_role(role)
    capacity = get_settings().ticket_default_capacity if capacity is None else capacity
    _check_capacity(capacity)
    if get_by_username(db_session=db_session, username=username) is not None:
        raise StaffError(f"用户名 {username} 已存在")
    user = StaffUser(
        username=username,
        display_name=(display_name or username).strip()[:100] or username,
        password_hash=hash_password(password),
        role=role,
        active=True,
        online=False,
        capacity=capacity,
        created_at=utc(now),
    )
    db_session.add(user)
    db_session.flush()
    record_event(
        db_session=db_session,
        actor_id=actor_id,
        action="staff_created",
        after={"staff_id": user.id, "username": username, "role": role},
        now=now,
    )
    return user


def get(*, db_session: Session, staff_id: int) -> StaffUser | None:
    """One account by id."""
    return db_session.get(StaffUser, staff_id)


def require(*, db_session: Session, staff_id: int) -> StaffUser:
    """One account by id; StaffError when there is none."""
    user = get(db_session=db_session, staff_id=staff_id)
    if user is None:
        raise StaffError(f"客服账号 {staff_id} 不存在")
    return user


def get_by_username(*, db_session: Session, username: str) -> StaffUser | None:
    """One account by login name."""
    return db_session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))


def get_all(*, db_session: Session, include_disabled: bool = True) -> list[StaffUser]:
    """Every account in id order."""
    query = select(StaffUser).order_by(StaffUser.id)
    if not include_disabled:
        query = query.where(StaffUser.active.is_(True))
    return list(db_session.scalars(query))


def has_active_admin(*, db_session: Session) -> bool:
    """Whether some active admin account exists (none on a fresh install)."""
    query = select(StaffUser.id).where(StaffUser.role == ROLE_ADMIN, StaffUser.active.is_(True)).limit(1)
    return db_session.scalar(query) is not None


def authenticate(*, db_session: Session, username: str, password: str, now: datetime | None = None) -> StaffUser | None:
    """The active account the name and password belong to, else None. Unknown names and disabled accounts cost one
    argon2 verification too, so the time taken does not tell which names exist."""
    user = get_by_username(db_session=db_session, username=username)
    if user is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = user.last_seen_at = utc(now)
    db_session.flush()
    return user


def set_password(
    *, db_session: Session, staff_id: int, password: str, actor_id: int | None = None, now: datetime | None = None
) -> StaffUser:
    """Replace an account's password."""
    _check_password(password)
    user = require(db_session=db_session, staff_id=staff_id)
    user.password_hash = hash_password(password)
    record_event(
        db_session=db_session, actor_id=actor_id, action="staff_password", after={"staff_id": user.id}, now=now
    )
    db_session.flush()
    return user


def set_online(*, db_session: Session, staff_id: int, online: bool, now: datetime | None = None) -> StaffUser:
    """Mark an agent online (auto-assignment gives them tickets) or offline; disabled accounts stay offline."""
    user = require(db_session=db_session, staff_id=staff_id)
    if online and not user.active:
        raise StaffError("账号已停用")
    if user.online != online:
        user.online = online
        record_event(
            db_session=db_session,
            actor_id=user.id,
            action="staff_online" if online else "staff_offline",
            after={"staff_id": user.id},
            now=now,
        )
    user.last_seen_at = utc(now)
    db_session.flush()
    return user


def touch(*, db_session: Session, staff_id: int, now: datetime | None = None) -> None:
    """Record that the account was just active in the console."""
    user = require(db_session=db_session, staff_id=staff_id)
    user.last_seen_at = utc(now)
    db_session.flush()


def _change(
    db_session: Session, user: StaffUser, field: str, value: object, actor_id: int | None, now: datetime | None
) -> StaffUser:
    before = getattr(user, field)
    if before != value:
        setattr(user, field, value)
        record_event(
            db_session=db_session,
            actor_id=actor_id,
            action=f"staff_{field}",
            before={"staff_id": user.id, field: before},
            after={"staff_id": user.id, field: value},
            now=now,
        )
        db_session.flush()
    return user


def set_capacity(
    *, db_session: Session, staff_id: int, capacity: int, actor_id: int | None = None, now: datetime | None = None
) -> StaffUser:
    """Set how many tickets the agent may hold at once (0: none are auto-assigned)."""
    _check_capacity(capacity)
    return _change(db_session, require(db_session=db_session, staff_id=staff_id), "capacity", capacity, actor_id, now)


def set_role(
    *, db_session: Session, staff_id: int, role: str, actor_id: int | None = None, now: datetime | None = None
) -> StaffUser:
    """Make the account an agent or an admin."""
    _check_role(role)
    return _change(db_session, require(db_session=db_session, staff_id=staff_id), "role", role, actor_id, now)


def set_display_name(
    *, db_session: Session, staff_id: int, display_name: str, actor_id: int | None = None, now: datetime | None = None
) -> StaffUser:
    """Change the name merchants' transcripts and colleagues see."""
    name = display_name.strip()[:100]
    if not name:
        raise StaffError("显示名称不能为空")
    return _change(db_session, require(db_session=db_session, staff_id=staff_id), "display_name", name, actor_id, now)


def disable(
    *, db_session: Session, staff_id: int, actor_id: int | None = None, now: datetime | None = None
) -> StaffUser:
    """Disable an account: it can no longer log in and goes offline (flows.disable_staff also frees its tickets)."""
    user = require(db_session=db_session, staff_id=staff_id)
    if user.active:
        user.online = False
        user.disabled_at = utc(now)
        _change(db_session, user, "active", False, actor_id, now)
    return user


def enable(
    *, db_session: Session, staff_id: int, actor_id: int | None = None, now: datetime | None = None
) -> StaffUser:
    """Let a disabled account log in again."""
    user = require(db_session=db_session, staff_id=staff_id)
    user.disabled_at = None
    return _change(db_session, user, "active", True, actor_id, now)
