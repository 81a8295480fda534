"""A local emulator of every Rokt endpoint in the contract, with fault injection. Never production.

`pipeline.sandbox.server.Sandbox` runs one in a thread; `rokt-pipeline sandbox` serves one as a process.
"""
