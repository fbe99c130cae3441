"""The remote engine's work root: one folder per job, and nothing read or written outside it.

    WORK_ROOT/token                      the token, when the engine made it (mode 0600)
    WORK_ROOT/jobs/<id>-<hash>/          one job: its name is the job id made safe (letters, digits,
                                         . _ -; at most 48) and a hash of the client and the full id,
                                         so two clients' jobs of the same id never share a folder
        inputs/reference.png             uploaded bytes, under names the engine chooses
        inputs/poses/pose_00001.png ...  (or inputs/poses.mp4)
        frame_00001.png ... job.json .resume/state.pt video.mp4   the job's output (aa_engine/jobs.py)

A remote job never names a path: the engine picks every one of them. A symbolic link found in
the work root is never followed: one in a job folder's place or inside it is removed before the
job runs, and a frame that is a link is refused (`unsafe_path`) rather than read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import time
from pathlib import Path

from aa_engine.errors import EngineError

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafePath(EngineError):
    code = "unsafe_path"


def folder_name(client: str, job_id: str) -> str:
    """The job's folder name: safe characters only, never '.', '..' or empty, unique per (client, id)."""
    safe = _UNSAFE.sub("_", job_id).strip("._-")[:48] or "job"
    digest = hashlib.sha256(f"{client}\0{job_id}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe}-{digest}"


class JobStore:
    def __init__(self, root: str | Path):
        root = Path(root).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.root = root.resolve()
            self.jobs = self.root / "jobs"
            if self.jobs.is_symlink():
                raise UnsafePath(f"{self.jobs} is a symbolic link.", "Remove it; the engine keeps its jobs in a real folder.")
            self.jobs.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise EngineError(f"The work root {root} cannot be created ({exc.strerror or exc}).",
                              "Pass --work-root with a folder the engine can write.", code="output") from exc

    # -- folders ----------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        if not name or name != _UNSAFE.sub("_", name) or name.startswith("."):
            raise UnsafePath(f"{name!r} is not a job folder name.", "This is a bug in the engine.")
        return self.jobs / name

    def prepare(self, name: str) -> Path:
        """The job's folder as a real directory directly under jobs/ (made if missing): a link in
        its place, or anywhere inside it, is removed, never followed."""
        path = self.path(name)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            log.warning("removing %s: not a real folder", path)
            path.unlink()
        path.mkdir(exist_ok=True, mode=0o700)
        for folder, dirs, files in os.walk(path):  # os.walk does not descend into linked folders
            for entry in dirs + files:
                full = os.path.join(folder, entry)
                if os.path.islink(full):
                    log.warning("removing the symbolic link %s from the work root", full)
                    os.unlink(full)
        if path.resolve().parent != self.jobs:
            raise UnsafePath(f"The job folder {name} resolves outside the work root.", "Check the work root's folders.")
        os.utime(path)
        return path

    def write_input(self, name: str, relative: str, data: bytes) -> Path:
        """Write uploaded bytes to jobs/<name>/<relative> (a name the engine chose), atomically."""
        folder = self.path(name)
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent.resolve() != (folder / relative).parent.absolute() or folder.is_symlink():
            raise UnsafePath(f"The input folder of job {name} is a link.", "The engine removes links before writing; retry.")
        tmp = target.with_name(f".{target.name}.upload-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)  # replaces a link in the target's place; never writes through one
        return target

    def read_file(self, name: str, relative: str) -> bytes:
        """The bytes of a regular file in the job's folder; UnsafePath for a symbolic link."""
        folder = self.path(name)
        if folder.is_symlink():
            raise UnsafePath(f"The folder of job {name} is a symbolic link; it is not followed.", "Remove the link on the engine's machine.")
        path = folder / relative
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if path.is_symlink():
                raise UnsafePath(f"{relative} in the job's folder is a symbolic link; the engine does not follow links out of its work root.",
                                 "Remove the link on the engine's machine and render again.") from exc
            raise
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UnsafePath(f"{relative} in the job's folder is not a regular file.", "Remove it on the engine's machine.")
            return handle.read()

    def touch(self, name: str) -> None:
        """Mark the job's folder as used now (the keep time counts from here)."""
        try:
            os.utime(self.path(name), follow_symlinks=False)
        except OSError:
            pass

    def remove(self, name: str) -> None:
        path = self.path(name)
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path, ignore_errors=True)  # rmtree unlinks links inside, never follows them

    def stale(self, max_age_s: float, keep: set[str] = frozenset()) -> list[str]:
        """Job folders untouched for longer than max_age_s (by their modification time), except `keep`."""
        cutoff = time.time() - max_age_s
        out = []
        for entry in self.jobs.iterdir():
            if entry.name in keep or entry.name.startswith("."):
                continue
            try:
                if entry.lstat().st_mtime < cutoff:
                    out.append(entry.name)
            except OSError:
                continue
        return out
