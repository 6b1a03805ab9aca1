"""Free capacity during one cycle, indexed so that placing a replica costs a few dictionary
look-ups instead of a scan of every node.

The placement rules are those of :mod:`pier.scheduler.placement`:

- hard constraints: node pool, GPU model, node selector labels, free CPU and memory;
- whole GPUs go to idle devices of one node, on the node with the fewest idle devices that
  still fits (consolidation keeps large holes for large jobs);
- fractions are best-fit: the partly used device with the smallest free share that fits,
  else an idle device on the node with the fewest idle devices;
- a gang (several replicas) is placed all-or-nothing.

Nodes that match the same constraints form a *group*; a group keeps its nodes in buckets by
their number of idle devices, so "a node with at least g idle devices" is found by looking
at buckets g, g+1, ... Groups are built on first use, once per constraint set and cycle.
A node can be *held* (reserved for a blocked job): it then leaves every bucket and nothing
is placed on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pier.scheduler.fragmentation import FragmentScorer, Workload
from pier.scheduler.types import JobRequest, NodeState, Placement, ReplicaRequest

__all__ = [
    "EPSILON",
    "IDLE",
    "Capacity",
    "Group",
    "GroupKey",
    "fit_devices",
    "group_key",
    "job_signature",
]

EPSILON = 1e-9
IDLE = 1.0 - EPSILON

GroupKey = tuple[str | None, str | None, frozenset[tuple[str, str]]]
_NO_LABELS: frozenset[tuple[str, str]] = frozenset()
_ANYWHERE: GroupKey = (None, None, _NO_LABELS)


def group_key(replica: ReplicaRequest) -> GroupKey:
    model = replica.gpu_model.lower() if replica.gpu_model is not None else None
    labels = frozenset(replica.node_selector.items()) if replica.node_selector else _NO_LABELS
    return (replica.node_pool, model, labels)


def _matches(node: NodeState, key: GroupKey) -> bool:
    pool, model, labels = key
    if pool is not None and pool not in (node.pool, node.labels.get("pool")):
        return False
    if model is not None and (node.gpu_model is None or node.gpu_model.lower() != model):
        return False
    return all(node.labels.get(k) == v for k, v in labels)


class Group:
    """The nodes matching one set of constraints, bucketed by idle device count; held nodes
    sit in buckets of their own."""

    __slots__ = (
        "buckets",
        "held_buckets",
        "idle_total",
        "key",
        "member_set",
        "members",
        "shapes",
    )

    def __init__(self, key: GroupKey, members: list[int], max_devices: int) -> None:
        self.key = key
        self.members = members
        self.member_set = frozenset(members)
        self.buckets: list[dict[int, None]] = [{} for _ in range(max_devices + 1)]
        self.held_buckets: list[dict[int, None]] = [{} for _ in range(max_devices + 1)]
        self.idle_total = 0
        """Idle devices on the group's nodes that are not held."""
        self.shapes: dict[tuple[int, float, int], list[int]] = {}
        """Members by size (devices, CPUs, memory): what could ever fit is judged per size."""

    def where(self) -> str:
        pool, model, labels = self.key
        parts = []
        if pool is not None:
            parts.append(f"node pool '{pool}'")
        if model is not None:
            parts.append(f"GPU model '{model}'")
        if labels:
            parts.append(f"labels {dict(sorted(labels))}")
        return " and ".join(parts) if parts else "the cluster"


class Capacity:
    """What is free on every node, updated as placements are made within one cycle."""

    def __init__(self, nodes: Sequence[NodeState], workload: Workload | None = None) -> None:
        self.nodes = nodes
        self.scorer = FragmentScorer(workload) if workload is not None and workload else None
        """With a workload, GPU fractions go where they add least fragmentation (FGD)."""
        self.index = {n.name: i for i, n in enumerate(nodes)}
        self.devices = [list(n.device_free) for n in nodes]
        self.cpu = [n.cpu_free for n in nodes]
        self.memory = [n.memory_free for n in nodes]
        self.idle: list[int] = []
        self.partial: dict[int, None] = {}
        """Nodes with at least one partly used device, for fractional best-fit."""
        for i, free in enumerate(self.devices):
            idle = free.count(1.0)
            if idle + free.count(0.0) == len(free):  # whole devices only: the common case
                self.idle.append(idle)
                continue
            self.idle.append(_idle_count(free))
            if _has_partial(free):
                self.partial[i] = None
        self.held = [False] * len(nodes)
        self.free_idle = sum(self.idle)
        """Idle devices on nodes that are not held."""
        self._groups: dict[GroupKey, Group] = {}
        self._node_groups: list[list[Group]] = [[] for _ in nodes]
        self._nofit: set[object] = set()
        self._fits_held: dict[object, int] = {}
        self._signature_groups: dict[object, list[Group]] = {}
        self.version = 0
        """Counts changes of free capacity outside placements that are undone."""

    # -- groups and holds --

    def group(self, key: GroupKey) -> Group:
        group = self._groups.get(key)
        if group is None:
            if key == _ANYWHERE:
                members = list(range(len(self.nodes)))
            else:
                members = [i for i, n in enumerate(self.nodes) if _matches(n, key)]
            most = max((len(self.devices[i]) for i in members), default=0)
            group = self._groups[key] = Group(key, members, most)
            for i in members:
                n = self.nodes[i]
                group.shapes.setdefault((len(n.device_free), n.cpus, n.memory), []).append(i)
                self._node_groups[i].append(group)
                if self.held[i]:
                    group.held_buckets[self.idle[i]][i] = None
                else:
                    group.buckets[self.idle[i]][i] = None
                    group.idle_total += self.idle[i]
        return group

    def _set_idle(self, node: int, idle: int) -> None:
        old = self.idle[node]
        if old == idle:
            return
        self.idle[node] = idle
        if self.held[node]:
            for group in self._node_groups[node]:
                del group.held_buckets[old][node]
                group.held_buckets[idle][node] = None
            return
        self.free_idle += idle - old
        for group in self._node_groups[node]:
            del group.buckets[old][node]
            group.buckets[idle][node] = None
            group.idle_total += idle - old

    def hold(self, node: int) -> None:
        """Reserve a node: nothing more is placed on it in this cycle."""
        if self.held[node]:
            return
        self.held[node] = True
        idle = self.idle[node]
        self.free_idle -= idle
        for group in self._node_groups[node]:
            del group.buckets[idle][node]
            group.held_buckets[idle][node] = None
            group.idle_total -= idle

    def gpu_exhausted(self) -> bool:
        """No device has any free share outside held nodes: no GPU job can start."""
        if self.free_idle > 0:
            return False
        return all(self.held[n] for n in self.partial)

    # -- finding room for one replica --

    def _find(
        self, group: Group, replica: ReplicaRequest, held: bool
    ) -> tuple[int, tuple[int, ...], float] | None:
        gpu, cpu, memory = replica.gpu, replica.cpu, replica.memory
        if gpu >= 1:
            node = self._whole(group, int(gpu), cpu, memory, held)
            if node is None:
                return None
            free = self.devices[node]
            if gpu == 1:  # the first idle device
                for d, s in enumerate(free):
                    if s >= IDLE:
                        return node, (d,), 0.0
            idle = [d for d, s in enumerate(free) if s >= IDLE]
            return node, tuple(idle[: int(gpu)]), 0.0
        if gpu > 0:
            return self._fraction(group, gpu, cpu, memory, held)
        node = self._cpu_only(group, cpu, memory, held)
        return None if node is None else (node, (), 0.0)

    def _whole(self, group: Group, gpu: int, cpu: float, memory: int, held: bool) -> int | None:
        cpus, memories = self.cpu, self.memory
        for buckets in (group.buckets, group.held_buckets) if held else (group.buckets,):
            for count in range(gpu, len(buckets)):
                for node in buckets[count]:
                    if cpus[node] + EPSILON >= cpu and memories[node] >= memory:
                        return node
        return None

    def _fraction(
        self, group: Group, gpu: float, cpu: float, memory: int, held: bool
    ) -> tuple[int, tuple[int, ...], float] | None:
        if self.scorer is not None:
            return self._fraction_by_fragmentation(group, gpu, cpu, memory, held)
        best: tuple[float, int, int, int] | None = None
        members = group.member_set
        for node in self.partial:
            if node not in members or (self.held[node] and not held):
                continue
            if self.cpu[node] + EPSILON < cpu or self.memory[node] < memory:
                continue
            for d, share in enumerate(self.devices[node]):
                if share + EPSILON >= gpu and share < IDLE:
                    key = (share, self.idle[node], node, d)
                    if best is None or key < best:
                        best = key
        if best is not None:
            return best[2], (best[3],), gpu
        idle_node = self._whole(group, 1, cpu, memory, held)
        if idle_node is None:
            return None
        device = next(d for d, s in enumerate(self.devices[idle_node]) if s >= IDLE)
        return idle_node, (device,), gpu

    def _fraction_by_fragmentation(
        self, group: Group, gpu: float, cpu: float, memory: int, held: bool
    ) -> tuple[int, tuple[int, ...], float] | None:
        """The device where ``gpu`` adds least to its node's fragmentation (see
        :mod:`pier.scheduler.fragmentation`)."""
        assert self.scorer is not None
        members = group.member_set
        candidates = [n for n in self.partial if n in members]
        for buckets in (group.buckets, group.held_buckets) if held else (group.buckets,):
            for count in range(1, len(buckets)):
                candidates.extend(buckets[count])
        states = (
            (node, self.devices[node], self.cpu[node], self.memory[node], self.idle[node])
            for node in candidates
            if held or not self.held[node]
        )
        found = self.scorer.best_device(states, gpu, cpu, memory)
        return None if found is None else (found[0], (found[1],), gpu)

    def _cpu_only(self, group: Group, cpu: float, memory: int, held: bool) -> int | None:
        best: tuple[int, float, int] | None = None
        for node in group.members:
            if self.held[node] and not held:
                continue
            if self.cpu[node] + EPSILON < cpu or self.memory[node] < memory:
                continue
            key = (len(self.devices[node]), -self.cpu[node], node)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]

    # -- changing what is free --

    def _change(
        self, node: int, devices: Iterable[int], share: float, cpu: float, mem: int
    ) -> None:
        """Take (positive amounts) or give back (negative) capacity on one node."""
        free = self.devices[node]
        for d in devices:
            free[d] -= share
        self.cpu[node] -= cpu
        self.memory[node] -= mem
        idle = free.count(1.0)
        if idle + free.count(0.0) == len(free):  # whole devices only: the common case
            self._set_idle(node, idle)
            self.partial.pop(node, None)
            return
        self._set_idle(node, sum(1 for s in free if s >= IDLE))
        if any(EPSILON < s < IDLE for s in free):
            self.partial[node] = None
        else:
            self.partial.pop(node, None)

    def occupy(self, placements: Iterable[Placement]) -> None:
        self.version += 1
        for p in placements:
            node = self.index.get(p.node)
            if node is not None:
                self._change(node, p.devices, p.gpu_fraction or 1.0, p.cpu, p.memory)

    def vacate(self, placements: Iterable[Placement]) -> None:
        """Give capacity back (a victim leaves): what failed to fit may fit now."""
        self.version += 1
        self._undo(placements)
        self._nofit.clear()

    def _undo(self, placements: Iterable[Placement]) -> None:
        for p in placements:
            node = self.index.get(p.node)
            if node is not None:
                self._change(node, p.devices, -(p.gpu_fraction or 1.0), -p.cpu, -p.memory)

    def try_place(self, job: JobRequest, signature: object = None) -> tuple[Placement, ...] | None:
        """Place every replica or none; on success the free state is updated. Jobs with
        equal ``signature`` (see :func:`signature`) fit or fail alike, so a failure is
        remembered until capacity is given back."""
        if signature is None:
            signature = job_signature(job)
        if signature in self._nofit:
            return None
        groups = self._signature_groups.get(signature)
        if groups is None:  # what the signature holds decides the groups
            groups = [self.group(group_key(r)) for r in job.replicas]
            self._signature_groups[signature] = groups
        placements = self._place(job, False, groups)
        if placements is None:
            self._nofit.add(signature)
        else:
            self.version += 1
        return placements

    def rejected(self, signature: object) -> bool:
        """Whether :meth:`try_place` is known to fail for jobs of ``signature``."""
        return signature in self._nofit

    def _place(
        self, job: JobRequest, held: bool, groups: Sequence[Group] | None = None
    ) -> tuple[Placement, ...] | None:
        placements: list[Placement] = []
        for k, replica in enumerate(job.replicas):
            group = self.group(group_key(replica)) if groups is None else groups[k]
            found = self._find(group, replica, held)
            if found is None:
                self._undo(placements)
                return None
            node, devices, fraction = found
            self._change(node, devices, fraction or 1.0, replica.cpu, replica.memory)
            placements.append(
                Placement(
                    replica.task,
                    replica.index,
                    self.nodes[node].name,
                    devices,
                    fraction,
                    replica.cpu,
                    replica.memory,
                )
            )
        return tuple(placements)

    def place_replica(self, replica: ReplicaRequest, node: int | None = None) -> Placement | None:
        """Place one replica (on ``node`` if given, even a held one); None if it does not
        fit. Capacity given back with :meth:`vacate` or :meth:`release`."""
        if node is None:
            found = self._find(self.group(group_key(replica)), replica, False)
        else:
            found = self._fit_on(node, replica)
        if found is None:
            return None
        at, devices, fraction = found
        self.version += 1
        self._change(at, devices, fraction or 1.0, replica.cpu, replica.memory)
        return Placement(
            replica.task,
            replica.index,
            self.nodes[at].name,
            devices,
            fraction,
            replica.cpu,
            replica.memory,
        )

    def release(self, placements: Iterable[Placement]) -> None:
        """Undo placements made in this cycle (the failure memory stays valid)."""
        self._undo(placements)

    def _fit_on(
        self, node: int, replica: ReplicaRequest
    ) -> tuple[int, tuple[int, ...], float] | None:
        if self.cpu[node] + EPSILON < replica.cpu or self.memory[node] < replica.memory:
            return None
        devices = fit_devices(self.devices[node], replica.gpu)
        if devices is None:
            return None
        return node, devices, replica.gpu if 0 < replica.gpu < 1 else 0.0

    def fits(self, job: JobRequest) -> bool:
        """Whether ``job`` fits now, held nodes aside; nothing is changed or remembered."""
        placements = self._place(job, False)
        if placements is None:
            return False
        self._undo(placements)
        return True

    def fits_ignoring_holds(self, job: JobRequest, signature: object = None) -> bool:
        """Whether ``job`` would fit now if no node were held (free capacity only shrinks
        within a cycle, so a "no" is remembered)."""
        key = ("unheld", job_signature(job) if signature is None else signature)
        if key in self._nofit:
            return False
        if self._fits_held.get(key) == self.version:
            return True
        placements = self._place(job, True)
        if placements is None:
            self._nofit.add(key)
            return False
        self._undo(placements)
        self._fits_held[key] = self.version
        return True

    # -- what can never fit, and what to hold for a blocked job --

    def infeasible(self, job: JobRequest) -> str | None:
        """Why ``job`` could not be placed even on an idle cluster, or None."""
        shapes: dict[tuple[GroupKey, float, float, int], int] = {}
        for r in job.replicas:
            key = (group_key(r), r.gpu, r.cpu, r.memory)
            shapes[key] = shapes.get(key, 0) + 1
        for (gkey, gpu, cpu, memory), count in shapes.items():
            group = self.group(gkey)
            if not group.members:
                return f"no node has {group.where()}"
            slots = sum(
                len(nodes) * self._slots(nodes[0], gpu, cpu, memory)
                for nodes in group.shapes.values()
            )
            if slots == 0:
                return (
                    f"asks for {gpu:g} GPUs, {cpu:g} CPUs and {memory} bytes of memory per "
                    f"replica; no node in {group.where()} has all of them"
                )
            if slots < count:
                return (
                    f"its {len(job.replicas)} replicas together ({job.gpu:g} GPUs) do not fit on "
                    f"{group.where()} even when it is idle"
                )
        return None

    def _slots(self, node: int, gpu: float, cpu: float, memory: int) -> int:
        """How many replicas of one shape an idle ``node`` holds."""
        n = self.nodes[node]
        if n.cpus + EPSILON < cpu or n.memory < memory:
            return 0
        by_cpu = int(n.cpus / cpu + EPSILON) if cpu > 0 else 1 << 30
        by_memory = n.memory // memory if memory > 0 else 1 << 30
        devices = len(n.device_free)
        if gpu >= 1:
            by_gpu = devices // int(gpu)
        elif gpu > 0:
            by_gpu = devices * int(1 / gpu + EPSILON)
        else:
            by_gpu = 1 << 30
        return min(by_gpu, by_cpu, by_memory)

    def hold_for(self, job: JobRequest) -> list[int]:
        """Hold the nodes a blocked ``job`` should get first: per replica shape, the matching
        nodes with the most idle devices now, until together they could hold every replica."""
        shapes: dict[tuple[GroupKey, float, float, int], int] = {}
        for r in job.replicas:
            key = (group_key(r), r.gpu, r.cpu, r.memory)
            shapes[key] = shapes.get(key, 0) + 1
        held: list[int] = []
        for (gkey, gpu, cpu, memory), count in shapes.items():
            group = self.group(gkey)
            chosen: list[int] = []
            for bucket in reversed(group.buckets):
                for node in bucket:
                    if count <= 0:
                        break
                    slots = self._slots(node, gpu, cpu, memory)
                    if slots:
                        chosen.append(node)
                        count -= slots
            for node in chosen:
                self.hold(node)
            held.extend(chosen)
        return held


_WHOLE = frozenset((0.0, 1.0))


def _idle_count(free: Sequence[float]) -> int:
    if not free or max(free) < IDLE:
        return 0
    if min(free) >= IDLE:
        return len(free)
    return sum(1 for s in free if s >= IDLE)


def _has_partial(free: Sequence[float]) -> bool:
    return not _WHOLE.issuperset(free) and any(EPSILON < s < IDLE for s in free)


def fit_devices(free: Sequence[float], gpu: float) -> tuple[int, ...] | None:
    """Devices of one node for ``gpu`` (whole: the first idle ones; a fraction: the fullest
    device that still fits), or None."""
    if gpu <= 0:
        return ()
    if gpu >= 1:
        idle = [d for d, s in enumerate(free) if s >= IDLE]
        return tuple(idle[: int(gpu)]) if len(idle) >= int(gpu) else None
    fits = [(s if s < IDLE else 2.0, d) for d, s in enumerate(free) if s + EPSILON >= gpu]
    return (min(fits)[1],) if fits else None


def job_signature(job: JobRequest) -> object:
    """What decides where a job fits: its replicas' shapes and constraints."""
    replicas = job.replicas
    if len(replicas) == 1:
        r = replicas[0]
        labels = tuple(r.node_selector.items()) if r.node_selector else ()
        return (r.gpu, r.cpu, r.memory, r.node_pool, r.gpu_model, labels)
    return tuple(
        [
            (
                r.gpu,
                r.cpu,
                r.memory,
                r.node_pool,
                r.gpu_model,
                tuple(r.node_selector.items()) if r.node_selector else (),
            )
            for r in replicas
        ]
    )
