"""A loopback emulator of ProductAI's public API (CONTRACTS.md §3) for tests, benchmarks and the demo."""

from .app import ProductAISandbox

__all__ = ["ProductAISandbox"]
