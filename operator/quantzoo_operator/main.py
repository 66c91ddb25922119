"""The module kopf loads (`kopf run -m quantzoo_operator.main`): importing it registers every handler."""

from quantzoo_operator.handlers import accounts, children, deletion, killswitch, lifecycle, reconcile
from quantzoo_operator.levels import handlers as levels

__all__ = ["accounts", "children", "deletion", "killswitch", "levels", "lifecycle", "reconcile"]
