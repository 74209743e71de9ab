"""Name -> thing, for the extension points: tasks, predictor kinds, search algorithms.

A registry is a plain dict (callers and tests may read and pop it) that refuses a second, different thing
under a taken name and answers an unknown name with one sentence listing the known ones.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from hat_cli.core.errors import HatError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, what: str):
        super().__init__()
        self.what = what  # how a sentence names one entry: "task", "predictor model", ...

    def add(self, name: str, item: T) -> T:
        if not name:
            raise HatError(f"A {self.what} needs a name to be registered.")
        if self.get(name, item) != item:
            raise HatError(f"Another {self.what} is already registered as '{name}'.")
        self[name] = item
        return item

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise HatError(f"Unknown {self.what} '{name}'; choose one of: {', '.join(self)}.") from None
