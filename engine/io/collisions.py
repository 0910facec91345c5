"""No output may overwrite an input, or another output of the same run.

``engine.runtime.registry.run_operation``, which every front end goes through, checks an
operation's path roles (its outputs, its inputs, and the files a job reads and writes:
``job_files``) with ``check_distinct`` before the operation starts; the mapping checks its job's
files the same way.

Paths are compared as files, not as strings: symbolic links and ``..`` are
resolved, hard links and case-insensitive file systems recognised, and a VRT
input brings the files it reads.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ElementTree  # nosec B405  # reads VRTs that carry no DTD (refused before parsing)
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import EngineError


@dataclass(frozen=True)
class NamedPath:
    setting: str  # the parameter or job key, as the user wrote it
    path: str


@dataclass
class PathRoles:
    inputs: list[NamedPath] = field(default_factory=list)
    outputs: list[NamedPath] = field(default_factory=list)
    # Folders read as a whole (a modality's "files" given as a folder): an output inside
    # one would be read as one more date by the next run.
    folders: list[NamedPath] = field(default_factory=list)

    def extend(self, other: PathRoles) -> None:
        self.inputs += other.inputs
        self.outputs += other.outputs
        self.folders += other.folders


def job_files(job, setting: str) -> PathRoles:
    """The files a job (engine.io.job.Job) reads and writes; ``setting`` names the parameter it came in."""
    roles = PathRoles(inputs=[NamedPath(f"{setting}: model", job.model)])
    for name, entry in job.modalities.items():
        sources = [(f"{setting}: modalities.{name}.files", entry.files)] if entry.files is not None else []
        sources += [
            (f"{setting}: modalities.{name}.parts[{k}].files", part.files) for k, part in enumerate(entry.parts or ())
        ]
        if entry.mask is not None:
            sources.append((f"{setting}: modalities.{name}.mask.files", entry.mask.files))
        for key, files in sources:
            for path in [files] if isinstance(files, str) else files:
                (roles.folders if os.path.isdir(path) else roles.inputs).append(NamedPath(key, path))
    if isinstance(job.normalization, str):
        roles.inputs.append(NamedPath(f"{setting}: normalization", job.normalization))
    roles.outputs += [NamedPath(f"{setting}: outputs.{key}", path) for key, path in job.outputs.files().items()]
    return roles


def check_distinct(roles: PathRoles) -> None:
    """Refuse any output that is an input, another output, or lies in a folder read as a whole."""
    inputs = [named for source in roles.inputs for named in with_vrt_sources(source)]
    for k, out in enumerate(roles.outputs):
        for source in inputs:
            if same_file(out.path, source.path):
                raise EngineError(
                    f"The output '{out.path}' ({out.setting}) is also the input '{source.path}' ({source.setting}): "
                    "choose another file name."
                )
        for other in roles.outputs[:k]:
            if same_file(out.path, other.path):
                raise EngineError(
                    f"The outputs '{other.path}' ({other.setting}) and '{out.path}' ({out.setting}) are the same "
                    "file (one would overwrite the other): choose another file name."
                )
        for folder in roles.folders:
            if same_file(Path(out.path).expanduser().parent, folder.path):
                raise EngineError(
                    f"The output '{out.path}' ({out.setting}) lies in the folder '{folder.path}' that {folder.setting} "
                    "reads as a whole (the next run would read it as an input): choose another folder."
                )


def with_vrt_sources(source: NamedPath, depth: int = 0) -> list[NamedPath]:
    """The input, and when it is a VRT the files it reads (nested VRTs too): writing over one of
    those would change the input as surely as writing over the VRT."""
    path = Path(source.path).expanduser()
    if path.suffix.lower() != ".vrt" or not path.is_file() or depth > 8:
        return [source]
    try:
        text = path.read_bytes()
        if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
            return [source]  # a VRT declares no DTD: entities (exponential or external) are never expanded
        root = ElementTree.fromstring(text)  # nosec B314  # no DTD reaches the parser (refused above)
    except (ElementTree.ParseError, OSError):
        return [source]  # not for this check to judge; the reader will say what is wrong
    found = [source]
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        if not name:
            continue
        file = path.parent / name if element.get("relativeToVRT") == "1" else Path(name)
        found += with_vrt_sources(NamedPath(f"{source.setting}, through '{path.name}'", str(file)), depth + 1)
    return found


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file, whether or not it exists yet."""
    a, b = Path(os.path.realpath(Path(a).expanduser())), Path(os.path.realpath(Path(b).expanduser()))
    if a == b:
        return True
    if a.exists() and b.exists():
        return os.path.samefile(a, b)  # hard links, and names that differ in case where case is ignored
    if not (a.parent.exists() and b.parent.exists()) or not os.path.samefile(a.parent, b.parent):
        return False
    return a.name.casefold() == b.name.casefold() and _ignores_case(a.parent)


@functools.lru_cache(maxsize=256)
def _ignores_case(folder: Path) -> bool:
    """Whether the file system of ``folder`` ignores case (macOS, Windows, casefold mounts)."""
    for candidate in (folder, *folder.parents):
        swapped = candidate.with_name(candidate.name.swapcase())
        if candidate.name != swapped.name:
            return swapped.exists() and os.path.samefile(candidate, swapped)
    return False
