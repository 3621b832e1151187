"""Who handles which ticket: agents claiming the next one, round-robin auto-assignment, take, transfer, release."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from core.clock import utc
from core.database import dialect_insert
from ticketing import lifecycle, service
from ticketing.models import (
    ACTIVE,
    ASSIGNED,
    NEW,
    PRIORITIES,
    ROLE_ADMIN,
    ROUND_ROBIN,
    WAITING,
    AssignmentCursor,
    StaffUser,
    Ticket,
)
from ticketing.service import TicketError

PRIORITY_RANK = case({p: i for i, p in enumerate(PRIORITIES)}, value=Ticket.priority, else_=len(PRIORITIES))
HOLDING = (ASSIGNED, WAITING)  # the states that count towards an agent's capacity


class AssignmentError(TicketError):
    """A ticket cannot be given to that agent; the message (Chinese) is fit for the console."""


class AtCapacity(AssignmentError):
    """The agent already holds as many tickets as their capacity allows."""


@dataclass(frozen=True)
class Assignment:
    """One ticket given to one agent by auto-assignment."""

    ticket: Ticket
    agent: StaffUser


def load(*, db_session: Session, agent_id: int) -> int:
    """How many tickets an agent holds (assigned or waiting on the merchant)."""
    query = select(func.count(Ticket.id)).where(Ticket.assignee_id == agent_id, Ticket.state.in_(HOLDING))
    return db_session.scalar(query) or 0


def loads(*, db_session: Session) -> dict[int, int]:
    """How many tickets each agent holds (agents holding none are absent)."""
    query = (
        select(Ticket.assignee_id, func.count(Ticket.id))
        .where(Ticket.assignee_id.is_not(None), Ticket.state.in_(HOLDING))
        .group_by(Ticket.assignee_id)
    )
    return {agent_id: count for agent_id, count in db_session.execute(query)}


def _active_agent(db_session: Session, agent_id: int) -> StaffUser:
    agent = db_session.get(StaffUser, agent_id, populate_existing=True)
    if agent is None or not agent.active:
        raise AssignmentError("客服账号不存在或已停用")
    return agent


def _check_room(db_session: Session, agent: StaffUser) -> None:
    if load(db_session=db_session, agent_id=agent.id) >= agent.capacity:
        raise AtCapacity(f"{agent.display_name} 已达到接单上限（{agent.capacity}）")


def _claimable(db_session: Session, limit: int) -> list[int]:
    """Ids of the oldest most urgent unassigned tickets, up to `limit`: rows no one else holds, locked
    (FOR UPDATE SKIP LOCKED) on PostgreSQL; on SQLite the write lock is taken first, so they stay unassigned."""
    query = (
        select(Ticket.id)
        .where(Ticket.state == NEW, Ticket.assignee_id.is_(None))
        .order_by(PRIORITY_RANK, Ticket.created_at, Ticket.id)
        .limit(limit)
    )
    if db_session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    else:
        service.write_lock(db_session=db_session)
    return list(db_session.scalars(query))


def _assign_unassigned(db_session: Session, ticket_id: int, agent_id: int, now: datetime, how: str) -> bool:
    """Give a ticket to an agent only while it is still new and unassigned; True when this call did."""
    statement = (
        update(Ticket)
        .where(Ticket.id == ticket_id, Ticket.state == NEW, Ticket.assignee_id.is_(None))
        .values(state=ASSIGNED, assignee_id=agent_id, assigned_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if db_session.execute(statement).rowcount != 1:
        return False
    service.record_event(
        db_session=db_session,
        ticket_id=ticket_id,
        actor_id=agent_id if how in ("claim", "take") else None,
        action="assigned",
        before={"state": NEW, "assignee_id": None},
        after={"state": ASSIGNED, "assignee_id": agent_id, "how": how},
        now=now,
    )
    return True


def _reload(db_session: Session, ticket_ids: list[int]) -> list[Ticket]:
    if not ticket_ids:
        return []
    query = select(Ticket).where(Ticket.id.in_(ticket_ids)).execution_options(populate_existing=True)
    by_id = {ticket.id: ticket for ticket in db_session.scalars(query)}
    return [by_id[ticket_id] for ticket_id in ticket_ids]


def claim(
    *,
    db_session: Session,
    agent_id: int,
    limit: int = 1,
    respect_capacity: bool = True,
    now: datetime | None = None,
) -> list[Ticket]:
    """The agent takes up to `limit` of the most urgent, oldest unassigned tickets (fewer when their capacity is
    nearly used); two agents never get the same ticket."""
    now = utc(now)
    agent = _active_agent(db_session, agent_id)
    room = agent.capacity - load(db_session=db_session, agent_id=agent_id) if respect_capacity else limit
    wanted = min(limit, room)
    if wanted <= 0:
        return []
    ids = _claimable(db_session, wanted)
    claimed = [ticket_id for ticket_id in ids if _assign_unassigned(db_session, ticket_id, agent_id, now, "claim")]
    db_session.flush()
    return _reload(db_session, claimed)


def claim_next(*, db_session: Session, agent_id: int, now: datetime | None = None) -> Ticket | None:
    """The agent takes the most urgent, oldest unassigned ticket (None when there is none or no room)."""
    tickets = claim(db_session=db_session, agent_id=agent_id, limit=1, now=now)
    return tickets[0] if tickets else None


def _lock_cursor(db_session: Session) -> AssignmentCursor:
    """The round-robin cursor row, created when missing and locked until commit (serialises auto-assignment)."""
    insert = dialect_insert(db_session)
    db_session.execute(insert(AssignmentCursor).values(name=ROUND_ROBIN, last_staff_id=None).on_conflict_do_nothing())
    query = select(AssignmentCursor).where(AssignmentCursor.name == ROUND_ROBIN)
    if db_session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db_session.scalar(query.execution_options(populate_existing=True))


def _next_agent(rotation: list[int], room: dict[int, int], after: int | None) -> int | None:
    """The first agent after `after` in id order (wrapping round) who has room."""
    later = [agent_id for agent_id in rotation if after is None or agent_id > after]
    earlier = [agent_id for agent_id in rotation if after is not None and agent_id <= after]
    return next((agent_id for agent_id in later + earlier if room.get(agent_id, 0) > 0), None)


def online_agents(*, db_session: Session) -> list[StaffUser]:
    """Active staff who are online, in id order (the round-robin rotation)."""
    query = select(StaffUser).where(StaffUser.active.is_(True), StaffUser.online.is_(True)).order_by(StaffUser.id)
    return list(db_session.scalars(query))


def auto_assign(*, db_session: Session, limit: int = 100, now: datetime | None = None) -> list[Assignment]:
    """Give unassigned tickets (most urgent, oldest first) to online agents in turn, skipping agents at capacity;
    the rotation is kept in the database so every worker continues it."""
    now = utc(now)
    cursor = _lock_cursor(db_session)
    agents = {agent.id: agent for agent in online_agents(db_session=db_session)}
    held = loads(db_session=db_session)
    room = {agent_id: agent.capacity - held.get(agent_id, 0) for agent_id, agent in agents.items()}
    budget = min(limit, sum(max(0, r) for r in room.values()))
    if budget <= 0:
        return []
    rotation, pointer, given = list(agents), cursor.last_staff_id, []
    for ticket_id in _claimable(db_session, budget):
        agent_id = _next_agent(rotation, room, pointer)
        if agent_id is None:
            break
        if _assign_unassigned(db_session, ticket_id, agent_id, now, "auto"):
            room[agent_id] -= 1
            pointer = agent_id
            given.append((ticket_id, agent_id))
    cursor.last_staff_id, cursor.updated_at = pointer, now
    db_session.flush()
    tickets = _reload(db_session, [ticket_id for ticket_id, _ in given])
    return [Assignment(ticket, agents[agent_id]) for ticket, (_, agent_id) in zip(tickets, given, strict=True)]


def take(
    *, db_session: Session, ticket_id: int, agent_id: int, force: bool = False, now: datetime | None = None
) -> Ticket:
    """The agent takes one ticket from the queue; `force` (admins) also takes it from another agent and ignores
    capacity."""
    now = utc(now)
    agent = _active_agent(db_session, agent_id)
    ticket = service.lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.assignee_id == agent_id and ticket.state in ACTIVE:
        return ticket
    if ticket.state not in ACTIVE:
        raise AssignmentError(f"工单 {ticket.number} 已结束，不能接单")
    if ticket.assignee_id is not None and not force:
        holder = db_session.get(StaffUser, ticket.assignee_id)
        raise AssignmentError(f"工单 {ticket.number} 已由 {holder.display_name if holder else '其他客服'} 处理")
    if not force:
        _check_room(db_session, agent)
    _hand_to(db_session, ticket, agent, now, actor_id=agent_id, how="take")
    return ticket


def transfer(
    *,
    db_session: Session,
    ticket_id: int,
    to_agent_id: int,
    actor_id: int | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> Ticket:
    """Hand an active ticket to another agent (by its holder or an admin); the state is kept, a new ticket becomes
    assigned. `force` ignores the receiving agent's capacity."""
    now = utc(now)
    agent = _active_agent(db_session, to_agent_id)
    ticket = service.lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in ACTIVE:
        raise AssignmentError(f"工单 {ticket.number} 已结束，不能转交")
    if actor_id is not None and actor_id != ticket.assignee_id:
        actor = db_session.get(StaffUser, actor_id)
        if actor is None or actor.role != ROLE_ADMIN:
            raise AssignmentError("只有当前处理人或管理员可以转交工单")
    if ticket.assignee_id == to_agent_id:
        return ticket
    if not force:
        _check_room(db_session, agent)
    _hand_to(db_session, ticket, agent, now, actor_id=actor_id, how="transfer")
    return ticket


def _hand_to(
    db_session: Session, ticket: Ticket, agent: StaffUser, now: datetime, *, actor_id: int | None, how: str
) -> None:
    before = {"state": ticket.state, "assignee_id": ticket.assignee_id}
    ticket.assignee_id, ticket.assigned_at = agent.id, now
    if ticket.state == NEW:
        lifecycle.apply_transition(db_session, ticket, ASSIGNED, now=now, actor_id=actor_id, reason=how)
    ticket.updated_at = now
    service.record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=actor_id,
        action="assigned",
        before=before,
        after={"state": ticket.state, "assignee_id": agent.id, "how": how},
        now=now,
    )
    db_session.flush()


def release(*, db_session: Session, ticket_id: int, actor_id: int | None = None, now: datetime | None = None) -> Ticket:
    """Put an assigned (or waiting) ticket back in the queue, unassigned."""
    now = utc(now)
    ticket = service.lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in HOLDING:
        raise AssignmentError(f"工单 {ticket.number} 没有处理人，无需退回")
    lifecycle.apply_transition(db_session, ticket, NEW, now=now, actor_id=actor_id, reason="released")
    return ticket


def release_all(*, db_session: Session, agent_id: int, now: datetime | None = None) -> list[Ticket]:
    """Put every ticket an agent holds back in the queue (e.g. when the account is disabled)."""
    query = select(Ticket.id).where(Ticket.assignee_id == agent_id, Ticket.state.in_(HOLDING)).order_by(Ticket.id)
    ticket_ids = list(db_session.scalars(query))
    return [release(db_session=db_session, ticket_id=ticket_id, now=now) for ticket_id in ticket_ids]
