"""A job's output folder: frames, job.json, video.mp4 and the resume checkpoint .resume/state.pt.

The engine may run as root on storage others can write to, so nothing here follows a symlink
inside the folder or trusts a name someone could have planted:

- the folder is opened once (a directory descriptor) and every name is used relative to it, so
  renaming the folder or swapping it for a symlink mid-job redirects nothing;
- every file is written to a new temp file (O_CREAT | O_EXCL | O_NOFOLLOW, an unpredictable name,
  the umask's permissions: mode 0666 & ~umask), then renamed over its name, which replaces a
  planted symlink rather than writing through it; a crash never leaves half a file;
- every file is read with O_NOFOLLOW, and `.resume` is used only as a real directory (a symlink
  there is removed, never entered, so no foreign folder's state.pt is read or deleted);
- a finished frame counts on resume only if it is a regular file that decodes (at the job's size);
- temp files of killed runs are removed when the folder is next opened;
- the video is encoded by ffmpeg in a private temp folder, then copied in like any other file.

The layout is documented in docs/protocol.md.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
from PIL import Image

from aa_engine.errors import OutputError

log = logging.getLogger(__name__)

FRAME_NAME = "frame_{:05d}.png"  # 1-based
FRAME_PATTERN = re.compile(r"frame_\d{5,}\.png")
MANIFEST = "job.json"
VIDEO = "video.mp4"
RESUME_DIR = ".resume"
STATE = "state.pt"

# Temp names: ".<name>.<host>.<pid>.<16 hex>.tmp". The random part makes them unpredictable (and
# O_EXCL makes a planted one fail the write instead of being written through); host and pid let
# the next start tell a dead run's leftovers from a live writer's.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
TEMP_PATTERN = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp")
# Names earlier versions used (.frame_00001.png.tmp-123, .job.json.tmp-123, .video-123.mp4, ...).
LEGACY_TEMP_PATTERN = re.compile(r"\.(.+\.tmp-|video-|write-test-)(?P<pid>\d+)(\.mp4)?")
STALE_AFTER_S = 3600.0  # a temp file this old is a leftover whoever wrote it (other hosts included)

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)  # a planted FIFO must not block
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



def png_text(manifest: dict):
    """PNG text chunks from job.json: `Software` (aa_engine VERSION) and `aa:job` (JSON: the
    engine version, fingerprint, job id, settings with the seed, and the weights' identity), so a
    frame copied anywhere still says how it was made."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if manifest:
        info.add_text("Software", f"aa_engine {manifest.get('engine_version', '')}".strip())
        record = {k: manifest.get(k) for k in ("engine_version", "fingerprint", "id", "settings", "weights")}
        info.add_text("aa:job", json.dumps(record, sort_keys=True, default=str))
    return info


class JobFolder:
    """The output folder of one job. Open it (creating it) with JobFolder(path); all paths it
    writes are inside it. Raises OutputError when it cannot be created or written."""

    def __init__(self, path: Path):
        self._fd: int | None = None
        try:
            self.path = Path(path).expanduser().resolve()  # the folder the user named (a symlink to it is their choice)
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise OutputError(f"The output folder {path} cannot be used ({exc}).", "Give a plain folder path.") from exc
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"The output folder {self.path} is a file, not a folder.", "Give a folder path (it is created if missing).")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, _OPEN_DIR)
            self.remove_stale_temp_files()
            probe = self._create_temp("write-test")[1]
            os.unlink(probe, dir_fd=self._fd)
        except OSError as exc:
            self.close()
            raise OutputError(
                f"The output folder {self.path} cannot be written ({exc.strerror or exc}).",
                "Choose a folder you can write to, or fix its permissions.",
            ) from exc
        self.state_path = self.path / RESUME_DIR / STATE  # for messages; always used through descriptors

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "JobFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- frames -----------------------------------------------------------------------------------
    def frame_path(self, index: int) -> Path:
        """The path of frame `index` (0-based; the name is 1-based)."""
        return self.path / FRAME_NAME.format(index + 1)

    def write_frame(self, index: int, image: np.ndarray) -> Path:
        info = png_text(self.read_manifest())  # the frame says what made it (job.json's identity)
        self._write(FRAME_NAME.format(index + 1), lambda f: Image.fromarray(image).save(f, format="PNG", pnginfo=info))
        return self.frame_path(index)

    def read_frame(self, index: int) -> Image.Image | None:
        """Frame `index` decoded (RGB), or None if it is not a regular file that decodes."""
        data = self._read_regular(self._fd, FRAME_NAME.format(index + 1))
        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
        except Exception:  # noqa: BLE001 - any undecodable frame is simply not finished
            return None

    def finished_frames(self, num_frames: int, size: tuple[int, int] | None = None) -> set[int]:
        """The frames already done: regular files (never symlinks) that decode, at `size` when given."""
        done = set()
        for i in range(num_frames):
            image = self.read_frame(i)
            if image is not None and (size is None or image.size == tuple(size)):
                done.add(i)
        return done

    def clear_frames(self) -> None:
        """Remove the frames of another job (unlinking names: a symlink goes, its target stays)."""
        for entry in os.scandir(self._fd):
            if FRAME_PATTERN.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
                self._unlink(self._fd, entry.name)

    # -- job.json -----------------------------------------------------------------------------------
    def read_manifest(self) -> dict:
        data = self._read_regular(self._fd, MANIFEST)
        try:
            manifest = json.loads(data) if data is not None else {}
        except (ValueError, RecursionError):
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def write_manifest(self, data: dict) -> None:
        self._write(MANIFEST, lambda f: f.write(json.dumps(data, indent=2).encode("utf-8")))

    # -- the resume checkpoint ------------------------------------------------------------------
    def save_state(self, fp: str, step: int, latents: torch.Tensor) -> None:
        state = {"fingerprint": fp, "step": step, "latents": latents.cpu()}
        fd = self._resume_dir(create=True)
        try:
            self._write(STATE, lambda f: torch.save(state, f), dir_fd=fd)
        finally:
            os.close(fd)

    def load_state(self, fp: str) -> tuple[int, torch.Tensor] | None:
        fd = self._resume_dir(create=False)
        if fd is None:
            return None
        try:
            data = self._read_regular(fd, STATE)
        finally:
            os.close(fd)
        if data is None:
            return None
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if state.get("fingerprint") != fp:
                return None
            return int(state["step"]), state["latents"]
        except Exception:  # noqa: BLE001 - a damaged checkpoint only means starting afresh
            return None

    def clear_state(self) -> None:
        fd = self._resume_dir(create=False)
        if fd is None:
            return
        try:
            self._unlink(fd, STATE)
            empty = not any(True for _ in os.scandir(fd))
        finally:
            os.close(fd)
        if empty:
            try:
                os.rmdir(RESUME_DIR, dir_fd=self._fd)
            except OSError:
                pass  # something was put there meanwhile: leave it

    def _resume_dir(self, create: bool) -> int | None:
        """A descriptor on .resume (the caller closes it), made if `create`; None if absent. A
        symlink or file planted at .resume is removed (the name, never its target)."""
        try:
            st = os.stat(RESUME_DIR, dir_fd=self._fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                log.warning("%s is not a folder (a symlink or file was put there); removing that name", self.path / RESUME_DIR)
                os.unlink(RESUME_DIR, dir_fd=self._fd)
                raise FileNotFoundError
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(RESUME_DIR, 0o777, dir_fd=self._fd)  # the umask applies
            except OSError as exc:
                raise OutputError(f"Cannot create {self.path / RESUME_DIR} ({exc.strerror or exc}).",
                                  "Check the output folder's permissions.") from exc
        try:
            return os.open(RESUME_DIR, _OPEN_DIR, dir_fd=self._fd)
        except OSError as exc:  # replaced by a symlink between the check and the open
            raise OutputError(f"{self.path / RESUME_DIR} changed while the engine was using it ({exc.strerror or exc}).",
                              "Something else is writing to the output folder; give the job a folder of its own.") from exc

    # -- video --------------------------------------------------------------------------------------
    def write_video(self, num_frames: int, fps: float) -> Path | None:
        """Encode the frames to video.mp4 (H.264) when imageio-ffmpeg is installed; else None."""
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401 - checks the writer is there
        except ImportError:
            log.warning("imageio-ffmpeg is not installed: no video.mp4 (the PNG frames are complete)")
            return None
        # ffmpeg opens its output by name, so it writes in a private folder (0700, ours), never
        # in the shared one; the result is then copied in through a temp file and a rename.
        with tempfile.TemporaryDirectory(prefix="aa-video-") as private:
            encoded = Path(private) / VIDEO
            writer = imageio.get_writer(encoded, fps=fps, codec="libx264", quality=8, macro_block_size=8, pixelformat="yuv420p")
            try:
                for i in range(num_frames):
                    image = self.read_frame(i)
                    if image is None:
                        raise OutputError(f"Frame {self.frame_path(i)} is missing or unreadable; no video was written.",
                                          "Something else changed the output folder; rerun the job to redo the frame.")
                    writer.append_data(np.asarray(image))
            finally:
                writer.close()
            with open(encoded, "rb") as source:
                self._write(VIDEO, lambda f: shutil.copyfileobj(source, f, 1 << 20))
        return self.path / VIDEO

    # -- temp files -------------------------------------------------------------------------------
    def remove_stale_temp_files(self) -> int:
        """Remove temp files left by killed runs (in the folder and in .resume); returns how many."""
        removed = self._remove_stale(self._fd)
        try:
            st = os.stat(RESUME_DIR, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            return removed
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(RESUME_DIR, _OPEN_DIR, dir_fd=self._fd)
            try:
                removed += self._remove_stale(fd)
            finally:
                os.close(fd)
        return removed

    def _remove_stale(self, dir_fd: int) -> int:
        removed = 0
        now = time.time()
        for entry in os.scandir(dir_fd):
            match = TEMP_PATTERN.fullmatch(entry.name)
            legacy = LEGACY_TEMP_PATTERN.fullmatch(entry.name) if match is None else None
            if match is None and legacy is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            pid = int((match or legacy).group("pid"))
            ours = match is None or match.group("host") == _HOST  # legacy names had no host: this machine's
            dead = ours and (pid == os.getpid() or not _pid_alive(pid))
            if dead or now - st.st_mtime > STALE_AFTER_S:
                if self._unlink(dir_fd, entry.name):
                    removed += 1
        if removed:
            log.info("removed %d temp file(s) left by an interrupted run in %s", removed, self.path)
        return removed

    def _create_temp(self, name: str, dir_fd: int | None = None) -> tuple[BinaryIO, str]:
        """A new temp file for `name` (O_EXCL, never through a symlink; mode 0666 & ~umask)."""
        dir_fd = self._fd if dir_fd is None else dir_fd
        for _ in range(100):
            temp = f".{name}.{_HOST}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temp, _CREATE, 0o666, dir_fd=dir_fd)
            except FileExistsError:
                continue
            return os.fdopen(fd, "wb"), temp
        raise FileExistsError(f"no free temp name for {name}")

    def _write(self, name: str, write: Callable[[BinaryIO], None], dir_fd: int | None = None) -> None:
        """Write `name` atomically: a new temp file, fsync'd, renamed over the name (which replaces
        a symlink or file there; it never writes through one)."""
        dir_fd = self._fd if dir_fd is None else dir_fd
        try:
            handle, temp = self._create_temp(name, dir_fd)
        except OSError as exc:
            raise OutputError(f"Cannot write {self.path / name} ({exc.strerror or exc}).",
                              "Check the output folder's permissions and free space.") from exc
        try:
            with handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            self._unlink(dir_fd, temp)
            raise OutputError(f"Cannot write {self.path / name} ({exc.strerror or exc}).",
                              "Check the output folder's permissions and free space; a folder with that name is in the way?") from exc
        except BaseException:
            self._unlink(dir_fd, temp)
            raise

    @staticmethod
    def _read_regular(dir_fd: int, name: str) -> bytes | None:
        """The bytes of `name` if it is a regular file (opened without following a symlink), else None."""
        try:
            fd = os.open(name, _OPEN_READ, dir_fd=dir_fd)
        except OSError:  # absent, a symlink (ELOOP), unreadable
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(os.dup(fd), "rb") as handle:
                return handle.read()
        finally:
            os.close(fd)

    @staticmethod
    def _unlink(dir_fd: int, name: str) -> bool:
        try:
            os.unlink(name, dir_fd=dir_fd)
            return True
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            return False
