"""What reading and rendering share: constants, errors, paths in a document, and the
walker that takes a document apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pier.errors import Invalid
from pier.services.manifests import NamespacedSpec
from pier.spec import JobKind, JobSpec

GPU_RESOURCE = "nvidia.com/gpu"
FRACTION_ANNOTATION = "gpu-fraction"
DESCRIPTION_ANNOTATION = "pier/description"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
NODE_POOL_SELECTOR = "run.ai/type"
GPU_MODEL_SELECTOR = "nvidia.com/gpu.product"
RELEASE_LABEL = "release"
SCHEDULERS = frozenset({"runai-scheduler", "pier"})
DEFAULT_SCHEDULER = "runai-scheduler"
SHM_PATH = "/dev/shm"
MAX_DOCUMENTS = 256
PRIORITY_CLASSES = {"train": True, "build": False, "interactive-preemptible": True}
SERVER_METADATA = frozenset(
    {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"}
)
KINDS = {("batch/v1", "Job"): JobKind.TRAIN, ("apps/v1", "StatefulSet"): JobKind.INTERACTIVE}

Loc = tuple[str | int, ...]


class ManifestInvalid(Invalid):
    """A document cannot be accepted; ``loc`` is ``["body", <document>, *path]``."""


class Unrepresentable(Invalid):
    """A job uses a field that a Kubernetes manifest cannot carry (``loc`` names it)."""


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """One document, translated. ``spec.project`` is unset: the service resolves
    ``namespace`` (or ``-p``) to a project."""

    index: int
    kind: str
    spec: JobSpec
    namespace: str | None
    user: str | None
    origins: Mapping[Loc, Loc] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.spec.name or self.spec.name_prefix or '(unnamed)'}"

    @property
    def request(self) -> NamespacedSpec:
        return NamespacedSpec(self.spec, self.namespace, self.user)


def path_text(path: Loc) -> str:
    """``("spec", "containers", 0, "image")`` -> ``spec.containers[0].image``; a key with a
    dot or slash in brackets: ``limits[nvidia.com/gpu]``."""
    text = ""
    for part in path:
        if isinstance(part, int) or (text and ("." in part or "/" in part)):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def locate(origins: Mapping[Loc, Loc], index: int, spec_loc: Sequence[Any]) -> list[str | int]:
    parts = tuple(spec_loc)
    for cut in range(len(parts), -1, -1):
        origin = origins.get(parts[:cut])
        if origin is not None:
            return ["body", index, *origin, *parts[cut:]]
    return ["body", index]


class Doc:
    """Walks one document: takes known keys, refuses the rest, remembers where each spec
    field came from."""

    def __init__(self, index: int, label: str) -> None:
        self.index = index
        self.label = label
        self.origins: dict[Loc, Loc] = {}

    def fail(self, path: Loc, message: str) -> ManifestInvalid:
        where = f"{path_text(path)}: " if path else ""
        return ManifestInvalid(
            f"document {self.index + 1} ({self.label}): {where}{message}",
            loc=["body", self.index, *path],
        )

    def mapping(self, value: Any, path: Loc) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.fail(path, "must be a mapping")
        return dict(value)

    def items(self, value: Any, path: Loc) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        return value

    def string(self, value: Any, path: Loc) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, "must be a non-empty string")
        return value

    def strings(self, value: Any, path: Loc) -> list[str]:
        result = []
        for i, item in enumerate(self.items(value, path)):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.fail((*path, i), "must be a string")
            result.append(item if isinstance(item, str) else str(item))
        return result

    def string_map(self, value: Any, path: Loc) -> dict[str, str]:
        result = {}
        for key, item in self.mapping(value, path).items():
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.fail((*path, key), "must be a string")
            result[key] = item if isinstance(item, str) else str(item)
        return result

    def integer(self, value: Any, path: Loc, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(path, f"must be a whole number of at least {low}")
        return value

    def boolean(self, value: Any, path: Loc) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def only(self, value: dict[str, Any], path: Loc, allowed: Sequence[str], what: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*path, key),
                    f"{what} field '{key}' is not supported by pier "
                    f"(supported: {', '.join(allowed)})",
                )

    def origin(self, spec_loc: Loc, path: Loc) -> None:
        self.origins[spec_loc] = path
