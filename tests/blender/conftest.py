"""Add-on and pose-export tests run inside real Blender (the bpy module), in the bpy environments.

bpy 4.2 can segfault and 4.5 can hang at interpreter exit when a timer is still registered or
rigify was enabled, so the test process ends with a flushed os._exit carrying pytest's status,
after pytest has written its summary and JUnit file.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_exit = {"status": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit["status"])


@pytest.fixture
def empty_blend():
    """A fresh, empty Blender file for the test."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene
