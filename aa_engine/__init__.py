"""Animate Anyone engine: reference image + skeleton maps -> temporally consistent video.

Runs in its own Python environment (torch, diffusers); never imports bpy.
"""

__version__ = "0.1.0"
from aa_contract.protocol import PROTOCOL_VERSION  # noqa: E402,F401 - declared once, in the contract
