"""The control API's methods, their parameters and results, in one place
(PROTOCOL.md §13): the services implement them, the control socket checks
requests against them, the CLI and the web app read results as them, and
``python -m node.api.spec`` writes §13's tables from them."""

from __future__ import annotations

from . import account, backup, contact, message, node
from .schema import Described

#: every method the node serves, in the order §13 lists them
METHODS: tuple[Described, ...] = (
    *node.METHODS,
    *account.METHODS,
    *contact.METHODS,
    *message.METHODS,
    *backup.METHODS,
)
BY_NAME = {m.name: m for m in METHODS}
assert len(BY_NAME) == len(METHODS), "a method is defined twice"
