"""A local emulator of every Rokt endpoint in the contract, with fault injection. Never production."""

from pipeline.sandbox.server import Sandbox

__all__ = ["Sandbox"]
