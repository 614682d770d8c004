"""The start/stop lifetime every simulator shares, as an async context manager."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class StartStop(ABC):
    """``async with thing:`` starts it on entry and stops it on exit."""

    @abstractmethod
    async def start(self) -> None:
        """Start serving."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop serving; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
