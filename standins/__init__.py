"""HTTP stand-ins for outside services, for tests and benchmarks.

Each one listens on 127.0.0.1 only and answers like the real API, so the
product's official clients are driven for real without leaving the machine.
"""
