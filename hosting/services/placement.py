"""Placement: which host takes a server, and why each other host cannot.

The engine answers three questions, all from one set of rules (`_reasons`):

- `claim(request)`: pick a host for a new server (or a move) and hold its room. The
  candidates are read without locks, filtered and ordered in SQL from the per-host usage
  counters (Host.alloc_*), so an order reads a handful of rows, not every server. Only
  the chosen host's row is locked (SELECT ... FOR UPDATE; under spread SKIP LOCKED first,
  so that concurrent orders fan out over the next best hosts), re-checked under the lock,
  and its counters raised in the caller's transaction; a host that no longer fits is
  passed over for the next. A host is never over-allocated: every change of a counter holds its row.
- `evaluate(request)`: every host with its verdict (eligible, or the reasons why not),
  for the API (GET /api/v1/servers/<uuid>/placement/) and the admin.
- `check_host(server, host)`: the reasons why `host` cannot take `server` now (a move's
  "room after the move" pre-check); an empty list means it can.

Rules: host online and not in maintenance; same kind (VM or container) and backend;
the zone asked for; the required CPU model (Server.required_cpu, a substring of
Host.cpu_model; a host whose CPU model was never read does not qualify); the guest's
network and storage pool among those the host reported (not checked while the host's
lists are empty: never read); pinning (Server.pinned_host); the customer's affinity and
anti-affinity groups (PlacementGroup); vCPU, memory and disk within capacity x
overcommit less the host's reserve (Host.reserved). Among the hosts that pass, the zone's
policy picks: spread (most free memory) or pack (least free memory that still fits).

Capacity in flight: a server moving holds room on its target (Server.reserved_host),
counted there like a placed server until `complete_move` or `release_target`; the
source host is never a target. The migration work calls `reserve_target` (or
`choose_target` to only look), then `complete_move` or `release_target`.

Counters change only here, in the transaction that creates, moves, resizes or terminates
the server; `recount` rebuilds them from the servers (the reconcile pass runs it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum, Value
from django.db.models.functions import Greatest
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from ..choices import GroupRule, HostState, PlacementPolicy, ServerState, VirtKind
from ..models import Customer, Host, PlacementGroup, Plan, Server, Zone
from .errors import Conflict, NoCapacity

# States whose servers hold their resources on the host.
HOLDING_STATES = [s for s in ServerState.values if s != ServerState.TERMINATED]
# How many candidates one query reads; more are read only when these all fail.
BATCH = 8


# --- what is asked --------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    vcpus: int
    memory_mib: int
    disk_gib: int

    @classmethod
    def of(cls, plan: Plan) -> Demand:
        return cls(plan.vcpus, plan.memory_mib, plan.disk_gib)


@dataclass(frozen=True)
class PlacementRequest:
    """What a host must offer. `for_order` builds it for a new server, `for_server` for
    an existing one (a move: its source is excluded, its own room not counted twice)."""

    customer_id: int
    demand: Demand
    kind: str
    backend: str = ""
    zone: str = ""
    required_cpu: str = ""
    network: str = ""  # "" : the host's own network must be one it reported
    storage_pool: str = ""  # "" : likewise its own pool
    pinned_host_id: int | None = None
    group_ids: tuple[int, ...] = ()
    server_id: int | None = None
    source_host_id: int | None = None
    exclude: frozenset[int] = frozenset()
    policy: str = ""  # "" : the zone's (Zone.policy), else the setting
    label: str = ""  # what is placed, for messages ("plan Small")

    @classmethod
    def for_order(
        cls,
        *,
        plan: Plan,
        customer: Customer,
        zone: str = "",
        groups: Iterable[PlacementGroup] = (),
        pinned_host: Host | None = None,
        required_cpu: str = "",
        policy: str = "",
    ) -> PlacementRequest:
        return cls(
            customer_id=customer.pk,
            demand=Demand.of(plan),
            kind=plan.kind,
            zone=zone,
            required_cpu=required_cpu,
            pinned_host_id=pinned_host.pk if pinned_host is not None else None,
            group_ids=tuple(g.pk for g in groups),
            label=f"plan {plan.name}",
            policy=policy,
        )

    @classmethod
    def for_server(cls, server: Server, *, exclude: Iterable[int] = ()) -> PlacementRequest:
        source = server.host
        return cls(
            customer_id=server.customer_id,
            demand=Demand.of(server.plan),
            kind=server.plan.kind,
            backend=source.backend if source is not None else "",
            zone=source.zone if source is not None else "",
            required_cpu=server.required_cpu,
            network=source.network if source is not None else "",
            storage_pool=source.storage_pool if source is not None else "",
            pinned_host_id=server.pinned_host_id,
            group_ids=tuple(server.placement_groups.values_list("pk", flat=True)),
            server_id=server.pk,
            source_host_id=server.host_id,
            exclude=frozenset(exclude),
            label=str(server),
        )


@dataclass
class HostVerdict:
    """One host's answer: eligible when `reasons` is empty; `free` is what it has left
    after its reserve (vCPUs, MiB, GiB), counting the server's own room if it holds it."""

    host: Host
    reasons: list[str]
    free: tuple[int, int, int]
    rank: int | None = None  # 1 = the policy's first choice, among the eligible

    @property
    def eligible(self) -> bool:
        return not self.reasons


@dataclass
class _Groups:
    """The customer's groups as placement sees them: for anti-affinity the hosts taken
    (with whom), for affinity the hosts allowed (where the members are)."""

    forbidden: dict[int, str] = field(default_factory=dict)  # host id -> member hostname
    allowed: dict[int, str] | None = None  # host id -> member hostname; None: no rule
    affinity_names: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, request: PlacementRequest, *, lock: bool = False) -> _Groups:
        result = cls()
        if not request.group_ids:
            return result
        groups = PlacementGroup.objects.filter(
            pk__in=request.group_ids, customer_id=request.customer_id
        )
        if lock:  # concurrent orders of one group see each other's choice
            list(groups.select_for_update().values_list("pk", flat=True))
        members = PlacementGroup.servers.through.objects.filter(
            placementgroup__in=groups, server__state__in=HOLDING_STATES
        )
        if request.server_id is not None:  # the server itself is no neighbour
            members = members.exclude(server_id=request.server_id)
        rows = members.values_list(
            "placementgroup__rule",
            "server__hostname",
            "server__host_id",
            "server__reserved_host_id",
        )
        for rule, hostname, host_id, reserved_id in rows:
            if rule == GroupRule.ANTI_AFFINITY:
                for pk in (host_id, reserved_id):
                    if pk is not None:
                        result.forbidden.setdefault(pk, hostname)
            elif host_id is not None:
                if result.allowed is None:
                    result.allowed = {}
                result.allowed.setdefault(host_id, hostname)
                result.affinity_names.append(hostname)
        return result


# --- the rules ------------------------------------------------------------------------


def _policy(request: PlacementRequest) -> str:
    if request.policy:
        return request.policy
    if request.zone:
        policy = _zone_policies().get(request.zone)
        if policy:
            return policy
    return settings.PLACEMENT_POLICY


# Zone policies as an order reads them: every zone's row, read again after ZONE_POLICY_TTL
# seconds (and at once in this process when a zone is saved or deleted), so that an order
# does not spend a query on it; another process sees an admin's change within the TTL.
ZONE_POLICY_TTL = 5.0
_zone_cache: tuple[float, dict[str, str]] | None = None


def _zone_policies() -> dict[str, str]:
    global _zone_cache
    cached = _zone_cache
    now = time.monotonic()
    if cached is None or now - cached[0] > ZONE_POLICY_TTL:
        cached = _zone_cache = (now, dict(Zone.objects.values_list("name", "policy")))
    return cached[1]


@receiver([post_save, post_delete], sender=Zone)
def forget_zone_policies(**kwargs) -> None:
    """The next order reads the zone policies again (a zone was saved or deleted)."""
    global _zone_cache
    _zone_cache = None


def _own(request: PlacementRequest, host: Host) -> bool:
    """Whether the server of `request` already holds room on `host` (its reservation)."""
    return (
        request.server_id is not None
        and host.pk != request.source_host_id
        and (Server.objects.filter(pk=request.server_id, reserved_host_id=host.pk).exists())
    )


def free_room(host: Host, *, own: Demand | None = None) -> tuple[int, int, int]:
    """(vCPUs, MiB, GiB) the host can still give after its reserve, plus `own` (room the
    server asking already holds there)."""
    rv, rm, rd = host.reserved
    plus = own or Demand(0, 0, 0)
    return (
        host.vcpu_capacity - rv - host.alloc_vcpus + plus.vcpus,
        host.memory_capacity_mib - rm - host.alloc_memory_mib + plus.memory_mib,
        int(host.disk_gib) - rd - host.alloc_disk_gib + plus.disk_gib,
    )


def _room_reasons(free: tuple[int, int, int], demand: Demand) -> list[str]:
    reasons = []
    if free[0] < demand.vcpus:
        reasons.append(f"not enough vCPUs: {max(free[0], 0)} free, {demand.vcpus} needed")
    if free[1] < demand.memory_mib:
        reasons.append(f"not enough memory: {max(free[1], 0)} MiB free, {demand.memory_mib} needed")
    if free[2] < demand.disk_gib:
        reasons.append(f"not enough disk: {max(free[2], 0)} GiB free, {demand.disk_gib} needed")
    return reasons


def _reasons(
    request: PlacementRequest, host: Host, groups: _Groups, *, own: bool = False
) -> tuple[list[str], tuple[int, int, int]]:
    """Every reason why `host` cannot take the request (empty: it can), and its room."""
    reasons: list[str] = []
    if host.pk == request.source_host_id:
        reasons.append("the server's current host")
    if host.pk in request.exclude:
        reasons.append("excluded by the caller")
    if host.state != HostState.ONLINE:
        reasons.append(f"host {host.state}")
    if host.maintenance:
        reasons.append(
            "maintenance" + (f": {host.maintenance_reason}" if host.maintenance_reason else "")
        )
    if host.kind != request.kind:
        reasons.append(f"wrong kind: host runs {host.kind}s, {request.kind} needed")
    if request.backend and host.backend != request.backend:
        reasons.append(f"wrong backend: {host.backend}, {request.backend} needed")
    if request.zone and host.zone != request.zone:
        reasons.append(f"zone {host.zone or '(none)'}, {request.zone} asked")
    if request.pinned_host_id is not None and host.pk != request.pinned_host_id:
        reasons.append("the server is pinned to another host")
    if request.required_cpu:
        if not host.cpu_model:
            reasons.append(f"CPU model unknown, {request.required_cpu} required")
        elif request.required_cpu.lower() not in host.cpu_model.lower():
            reasons.append(f"CPU {host.cpu_model}, {request.required_cpu} required")
    network = request.network or host.network
    if host.networks and network not in host.networks:
        reasons.append(f"network {network} missing")
    pool = request.storage_pool or host.storage_pool
    if host.storage_pools and pool not in host.storage_pools:
        reasons.append(f"storage pool {pool} missing")
    if host.pk in groups.forbidden:
        reasons.append(f"anti-affinity with {groups.forbidden[host.pk]}")
    if groups.allowed is not None and host.pk not in groups.allowed:
        reasons.append(f"affinity with {', '.join(sorted(set(groups.affinity_names)))}")
    free = free_room(host, own=request.demand if own else None)
    reasons += _room_reasons(free, request.demand)
    return reasons, free


def _preference(policy: str, free: tuple[int, int, int], pk: int) -> tuple:
    if policy == PlacementPolicy.PACK:
        return (free[1], free[0], free[2], pk)
    return (-free[1], -free[0], -free[2], pk)


# --- the questions ----------------------------------------------------------------------


def evaluate(request: PlacementRequest, hosts: Iterable[Host] | None = None) -> list[HostVerdict]:
    """Every host (or `hosts`) with its verdict: the eligible ones first, in the order the
    policy prefers them (rank 1 = the one `claim` would try first), then the others by
    name. Reads without locks: an answer for people, not a promise."""
    groups = _Groups.load(request)
    holding = set()
    if request.server_id is not None:
        holding = set(
            Server.objects.filter(pk=request.server_id, reserved_host__isnull=False).values_list(
                "reserved_host_id", flat=True
            )
        )
    verdicts = []
    for host in hosts if hosts is not None else Host.objects.order_by("name"):
        reasons, free = _reasons(request, host, groups, own=host.pk in holding)
        verdicts.append(HostVerdict(host, reasons, free))
    policy = _policy(request)
    eligible = sorted(
        (v for v in verdicts if v.eligible), key=lambda v: _preference(policy, v.free, v.host.pk)
    )
    for rank, verdict in enumerate(eligible, 1):
        verdict.rank = rank
    return eligible + [v for v in verdicts if not v.eligible]


def check_host(server: Server, host: Host) -> list[str]:
    """Why `host` cannot take `server` now, as a move's target (empty: it can). Reads the
    host's current counters; room the server already holds there counts as its own."""
    request = PlacementRequest.for_server(server)
    fresh = Host.objects.get(pk=host.pk)
    reasons, _ = _reasons(request, fresh, _Groups.load(request), own=_own(request, fresh))
    return reasons


# --- claim: one statement per order ---------------------------------------------------------
#
# An order's claim is one SQL statement on PostgreSQL: pick the best of the first BATCH
# hosts that pass the rules (read from the generated Host.room_* columns and the zone's
# index), lock it (FOR UPDATE SKIP LOCKED under spread, so that concurrent orders fan out
# over the next best hosts), re-check it under the lock (PostgreSQL re-evaluates the
# conditions on the row's newest version) and raise its counters, returning the row. The
# UPDATE repeats the room condition, so a counter is never raised past the capacity. The
# rules that SQL cannot express the same way are checked again in Python on the row
# returned (`_reasons`): a host failing them is given back and left out. Under pack, orders
# wait for the first host instead of fanning out, each attempt in a savepoint that locks one
# row, so an order never waits while it holds a host. SQLite (one writer at a time) reads
# the candidates and raises the first fitting one's counters with a conditional UPDATE.

_TABLE = Host._meta.db_table
_FIELDS = list(Host._meta.concrete_fields)
_ATTNAMES = [f.attname for f in _FIELDS]
_COLUMNS = ", ".join(f'"{_TABLE}"."{f.column}"' for f in _FIELDS)
_RAISE = (
    "alloc_vcpus = alloc_vcpus + %s, alloc_memory_mib = alloc_memory_mib + %s, "
    "alloc_disk_gib = alloc_disk_gib + %s, alloc_servers = alloc_servers + 1"
)
_converters: dict[str, list[tuple[int, list, object]]] = {}


def _host_from_row(connection, row: Sequence) -> Host:
    """A Host from a raw row of _COLUMNS, with the values Django's own query would give."""
    converters = _converters.get(connection.vendor)
    if converters is None:
        converters = []
        for i, f in enumerate(_FIELDS):
            col = f.get_col(_TABLE)
            fns = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if fns:
                converters.append((i, fns, col))
        _converters[connection.vendor] = converters
    values = list(row)
    for i, fns, expression in converters:
        for fn in fns:
            values[i] = fn(values[i], expression, connection)
    return Host.from_db(connection.alias, _ATTNAMES, values)


@dataclass
class _Query:
    """The rules, the room and the policy's order of one request, as SQL over hosting_host."""

    where: str
    params: list
    fits: str
    fits_params: list
    order: str

    @classmethod
    def of(cls, request: PlacementRequest, groups: _Groups, policy: str, vendor: str) -> _Query:
        where = ["state = %s", "maintenance = %s", "kind = %s"]
        params: list = [HostState.ONLINE, False, request.kind]
        for column, value in (("backend", request.backend), ("zone", request.zone)):
            if value:
                where.append(f"{column} = %s")
                params.append(value)
        if request.pinned_host_id is not None:
            where.append("id = %s")
            params.append(request.pinned_host_id)
        if groups.allowed is not None:
            where.append(_in("id", groups.allowed, params))
        excluded = set(request.exclude) | set(groups.forbidden)
        if request.source_host_id is not None:
            excluded.add(request.source_host_id)
        if excluded:
            where.append("NOT " + _in("id", excluded, params))
        if request.required_cpu:
            from django.db import connection

            pattern = f"%{connection.ops.prep_for_like_query(request.required_cpu)}%"
            if vendor == "postgresql":
                where.append("UPPER(cpu_model) LIKE UPPER(%s)")
            else:
                where.append("cpu_model LIKE %s ESCAPE '\\'")
            params.append(pattern)
        if vendor == "postgresql":  # the host's reported networks and pools (else: Python)
            for lists, own, asked in (
                ("networks", "network", request.network),
                ("storage_pools", "storage_pool", request.storage_pool),
            ):
                where.append(
                    f"(jsonb_typeof({lists}) <> 'array' OR {lists} = '[]'::jsonb"
                    f" OR {lists} ? COALESCE(NULLIF(%s, ''), {own}))"
                )
                params.append(asked)
        free = _free_sql()
        d = request.demand
        fits = " AND ".join(f"{expr} >= %s" for expr in free)
        fits_params = [d.memory_mib, d.vcpus, d.disk_gib]
        direction = "" if policy == PlacementPolicy.PACK else " DESC"
        order = ", ".join(f"{expr}{direction}" for expr in free) + ", id"
        return cls(" AND ".join(where), params, fits, fits_params, order)

    def candidates(self, limit: int, offset: int = 0) -> tuple[str, list]:
        sql = (
            f"SELECT {_COLUMNS} FROM {_TABLE} WHERE {self.where} AND {self.fits}"
            f" ORDER BY {self.order} LIMIT {int(limit)} OFFSET {int(offset)}"
        )
        return sql, self.params + self.fits_params


def _in(column: str, values: Iterable[int], params: list) -> str:
    values = list(values)
    if not values:
        return "1 = 0"
    params.extend(values)
    return f"{column} IN ({', '.join(['%s'] * len(values))})"


def _free_sql() -> tuple[str, str, str]:
    """Free memory, vCPUs, disk as SQL: the generated room less the setting's reserve for
    hosts without their own (nothing to subtract by default, so the index orders)."""
    out = []
    for column, reserve, default in (
        ("room_memory_mib", "reserve_memory_mib", settings.PLACEMENT_RESERVE_MEMORY_MIB),
        ("room_vcpus", "reserve_vcpus", settings.PLACEMENT_RESERVE_VCPUS),
        ("room_disk_gib", "reserve_disk_gib", settings.PLACEMENT_RESERVE_DISK_GIB),
    ):
        default = int(default)
        out.append(
            f"({column} - CASE WHEN {reserve} IS NULL THEN {default} ELSE 0 END)"
            if default
            else column
        )
    return out[0], out[1], out[2]


def claim(request: PlacementRequest) -> Host:
    """Choose a host for `request` and hold its room: the host's counters are raised in
    the caller's transaction (required), under the lock of that one host row. Raises
    NoCapacity when no host can take it."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("placement.claim() must run inside the transaction that places")
    groups = _Groups.load(request, lock=True)
    policy = _policy(request)
    refused: set[int] = set()  # hosts the Python rules turned down after SQL chose them
    while True:
        query = _Query.of(
            replace(request, exclude=request.exclude | refused) if refused else request,
            groups,
            policy,
            connection.vendor,
        )
        if connection.vendor == "postgresql":
            host = _claim_postgresql(connection, query, request.demand, policy)
        else:
            host = _claim_first_fitting(connection, query, request, groups)
        if host is None:
            d = request.demand
            kind = VirtKind(request.kind).label.lower() if request.kind in VirtKind.values else ""
            raise NoCapacity(
                f"No online {kind} host has room for {request.label or 'this server'} "
                f"({d.vcpus} vCPU, {d.memory_mib} MiB, {d.disk_gib} GiB)."
            )
        if not _reasons(request, host, groups, own=True)[0]:
            return host
        shift(host.pk, request.demand, -1)  # a rule SQL did not see: give it back
        refused.add(host.pk)


def _claim_postgresql(connection, query: _Query, demand: Demand, policy: str) -> Host | None:
    d = demand
    both = query.params + query.fits_params
    tail = [d.vcpus, d.memory_mib, d.disk_gib, *query.fits_params]  # the UPDATE's own
    update = (
        f" UPDATE {_TABLE} SET {_RAISE} FROM pick"
        f" WHERE {_TABLE}.id = pick.id AND {query.fits} RETURNING {_COLUMNS}"
    )
    # the first host only, its lock waited for (pack; spread once waiting turns long)
    first = (
        f"WITH pick AS (SELECT id FROM {_TABLE} WHERE {query.where} AND {query.fits}"
        f" ORDER BY {query.order} LIMIT 1){update}"
    )
    # the best of the first `batch` that no other order holds (spread)
    # (the first `batch` read once, in order, then locked by primary key: planned so
    # whatever the table's statistics say)
    free_one = (
        f"WITH pick AS (SELECT id FROM {_TABLE} JOIN unnest(ARRAY(SELECT id FROM {_TABLE}"
        f" WHERE {query.where} AND {query.fits} ORDER BY {query.order} LIMIT %s))"
        f" WITH ORDINALITY AS top (top_id, rank) ON id = top_id"
        f" WHERE {query.where} AND {query.fits} ORDER BY rank LIMIT 1"
        f" FOR UPDATE OF {_TABLE} SKIP LOCKED){update}"
    )
    wait = policy == PlacementPolicy.PACK
    waited = 0.0
    batch = BATCH
    with connection.cursor() as cursor:
        while True:
            if wait:
                try:
                    with transaction.atomic():  # a host found full is let go at once
                        cursor.execute(first, both + tail)
                        row = cursor.fetchone()
                        if row is None:
                            raise _NoLongerFits
                except _NoLongerFits:
                    row = None
            else:
                cursor.execute(free_one, [*both, batch, *both, *tail])
                row = cursor.fetchone()
            if row is not None:
                return _host_from_row(connection, row)
            # none taken: no host fits any more, or each one that fits is held by another
            # order (whose commit changes its room): look again once that has moved on
            cursor.execute(
                f"SELECT 1 FROM {_TABLE} WHERE {query.where} AND {query.fits} LIMIT 1", both
            )
            if cursor.fetchone() is None:
                return None
            batch = 1_000_000  # every fitting host, not only the first BATCH
            if not wait:
                pause = min(0.0005 + waited / 10, 0.01)
                time.sleep(pause)
                waited += pause
                wait = waited > 1.0  # held that long: queue for the first host instead


def _claim_first_fitting(connection, query: _Query, request, groups: _Groups) -> Host | None:
    """Read the candidates and raise the counters of the first that passes every rule and
    still fits (a conditional UPDATE): SQLite, where one transaction writes at a time."""
    d = request.demand
    take = (
        f"UPDATE {_TABLE} SET {_RAISE} WHERE id = %s AND {query.where} AND {query.fits}"
        f" RETURNING {_COLUMNS}"
    )
    offset = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(*query.candidates(BATCH, offset))
            rows = cursor.fetchall()
            for row in rows:
                host = _host_from_row(connection, row)
                if _reasons(request, host, groups)[0]:
                    continue
                params = [d.vcpus, d.memory_mib, d.disk_gib, host.pk]
                cursor.execute(take, params + query.params + query.fits_params)
                taken = cursor.fetchone()
                if taken is not None:
                    return _host_from_row(connection, taken)
            if len(rows) < BATCH:
                return None
            offset += BATCH


class _NoLongerFits(Exception):
    pass


def shift(host_id: int, demand: Demand, sign: int) -> None:
    """Add (sign +1) or remove (-1) one server's room on a host's counters. The UPDATE
    takes the row's lock; removal never goes below zero (a drift is for `recount`)."""
    if sign > 0:
        Host.objects.filter(pk=host_id).update(
            alloc_vcpus=F("alloc_vcpus") + demand.vcpus,
            alloc_memory_mib=F("alloc_memory_mib") + demand.memory_mib,
            alloc_disk_gib=F("alloc_disk_gib") + demand.disk_gib,
            alloc_servers=F("alloc_servers") + 1,
        )
    else:
        Host.objects.filter(pk=host_id).update(
            alloc_vcpus=Greatest(F("alloc_vcpus") - demand.vcpus, Value(0)),
            alloc_memory_mib=Greatest(F("alloc_memory_mib") - demand.memory_mib, Value(0)),
            alloc_disk_gib=Greatest(F("alloc_disk_gib") - demand.disk_gib, Value(0)),
            alloc_servers=Greatest(F("alloc_servers") - 1, Value(0)),
        )


# --- a server's life: termination, resize, moves ---------------------------------------


def release(server: Server) -> None:
    """The server is terminated: free its room on its host and on a move's target. Call
    in the transaction that records the termination, with the server row locked."""
    demand = Demand.of(server.plan)
    if server.host_id is not None:
        shift(server.host_id, demand, -1)
    if server.reserved_host_id is not None:
        shift(server.reserved_host_id, demand, -1)
        server.reserved_host = None
        server.save(update_fields=["reserved_host", "updated_at"])


def resize(server: Server, plan: Plan) -> None:
    """Hold the room of `plan` instead of the server's plan on its host (and a move's
    target), or raise NoCapacity with the host's reasons. The caller saves the plan, in
    the same transaction, with the server row locked."""
    old, new = Demand.of(server.plan), Demand.of(plan)
    for host_id in (server.host_id, server.reserved_host_id):
        if host_id is None:
            continue
        host = Host.objects.select_for_update().get(pk=host_id)
        free = free_room(host, own=old)
        reasons = _room_reasons(free, new)
        if reasons:
            raise NoCapacity(f"{host.name} cannot take plan {plan.name}: {'; '.join(reasons)}")
        shift(host_id, old, -1)
        shift(host_id, new, +1)


def choose_target(server: Server, *, exclude: Iterable[int] = ()) -> Host | None:
    """The host a move of `server` would go to now (the policy's first eligible), or None.
    Only looks: `reserve_target` holds the room."""
    verdicts = evaluate(PlacementRequest.for_server(server, exclude=exclude))
    return verdicts[0].host if verdicts and verdicts[0].eligible else None


def reserve_target(
    server: Server, *, host: Host | None = None, exclude: Iterable[int] = ()
) -> Host:
    """Hold room for `server` on `host` (checked) or on the host placement chooses (its
    source and `exclude` left out): Server.reserved_host is set and the target's counters
    count it until `complete_move` or `release_target`. Raises NoCapacity with the
    reasons, Conflict if the server already holds a target."""
    with transaction.atomic():
        locked = _lock_server(server.pk)
        if locked.reserved_host_id is not None:
            raise Conflict(f"{locked} already holds room on another host.")
        request = PlacementRequest.for_server(locked, exclude=exclude)
        if host is None:
            target = claim(request)
        else:
            groups = _Groups.load(request, lock=True)
            fresh = Host.objects.select_for_update().get(pk=host.pk)
            reasons, _ = _reasons(request, fresh, groups)
            if reasons:
                raise NoCapacity(f"{fresh.name} cannot take {locked}: {'; '.join(reasons)}")
            shift(fresh.pk, request.demand, +1)
            target = fresh
        locked.reserved_host = target
        locked.save(update_fields=["reserved_host", "updated_at"])
    server.reserved_host = target
    return target


def complete_move(server: Server) -> Host:
    """The move is done: the server's host becomes its reserved target, and its room on
    the source is freed."""
    with transaction.atomic():
        locked = _lock_server(server.pk)
        target = locked.reserved_host
        if target is None:
            raise Conflict(f"{locked} holds no room on another host.")
        if locked.host_id is not None:
            shift(locked.host_id, Demand.of(locked.plan), -1)
        locked.host, locked.reserved_host = target, None
        locked.save(update_fields=["host", "reserved_host", "updated_at"])
    server.host, server.reserved_host = target, None
    return target


def release_target(server: Server) -> None:
    """The move is given up: the room held on its target is freed (no-op if none)."""
    with transaction.atomic():
        locked = _lock_server(server.pk)
        if locked.reserved_host_id is None:
            return
        shift(locked.reserved_host_id, Demand.of(locked.plan), -1)
        locked.reserved_host = None
        locked.save(update_fields=["reserved_host", "updated_at"])
    server.reserved_host = None


def _lock_server(pk: int) -> Server:
    return Server.objects.select_for_update(of=("self",)).select_related("plan", "host").get(pk=pk)


# --- counters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostUsage:
    """What a host's servers hold (from its counters) against its capacity."""

    host: Host
    vcpus_used: int
    memory_used_mib: int
    disk_used_gib: int
    servers: int

    @classmethod
    def of(cls, host: Host) -> HostUsage:
        return cls(
            host, host.alloc_vcpus, host.alloc_memory_mib, host.alloc_disk_gib, host.alloc_servers
        )

    @property
    def vcpus_free(self) -> int:
        return self.host.vcpu_capacity - self.vcpus_used

    @property
    def memory_free_mib(self) -> int:
        return self.host.memory_capacity_mib - self.memory_used_mib

    @property
    def disk_free_gib(self) -> int:
        return self.host.disk_gib - self.disk_used_gib


def host_usage(hosts=None) -> list[HostUsage]:
    """Usage of every host (or of the `hosts` queryset), read from the counters."""
    return [HostUsage.of(h) for h in (hosts if hosts is not None else Host.objects.all())]


def counted_usage(host_id: int) -> tuple[int, int, int, int]:
    """(vCPUs, MiB, GiB, servers) summed from the servers placed on or moving to a host:
    what its counters must say."""
    row = (
        Server.objects.filter(Q(host_id=host_id) | Q(reserved_host_id=host_id))
        .filter(state__in=HOLDING_STATES)
        .aggregate(
            v=Sum("plan__vcpus", default=0),
            m=Sum("plan__memory_mib", default=0),
            d=Sum("plan__disk_gib", default=0),
            n=Sum(Value(1), default=0),
        )
    )
    return row["v"], row["m"], row["d"], row["n"]


def recount(hosts: Sequence[Host] | None = None) -> list[str]:
    """Rebuild the usage counters of `hosts` (default all) from their servers, each under
    its row's lock; returns the names of the hosts whose counters were wrong."""
    fixed = []
    ids = (
        [h.pk for h in hosts]
        if hosts is not None
        else list(Host.objects.values_list("pk", flat=True))
    )
    for pk in ids:
        with transaction.atomic():
            host = Host.objects.select_for_update().filter(pk=pk).first()
            if host is None:
                continue
            counted = counted_usage(pk)
            stored = (
                host.alloc_vcpus,
                host.alloc_memory_mib,
                host.alloc_disk_gib,
                host.alloc_servers,
            )
            if counted != stored:
                Host.objects.filter(pk=pk).update(
                    alloc_vcpus=counted[0],
                    alloc_memory_mib=counted[1],
                    alloc_disk_gib=counted[2],
                    alloc_servers=counted[3],
                )
                fixed.append(host.name)
    return fixed
