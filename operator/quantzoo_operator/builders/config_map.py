"""The `<name>-config` ConfigMap: `engine.json` and `safety.json`, each
`{"namespace": ..., "name": ..., "spec": {<the full spec, camelCase, defaults filled in>}}`, exactly what
the engine and the safety service read from the file named by `QUANTZOO_CONFIG`.

Which spec changes restart the engine pod, and which do not (the rule the engine template follows):

- LIVE fields -- `risk`, `symbols` (and `safety`, which the engine does not read): the
  engine watches its own TradingSystem and applies them while it runs. They change this ConfigMap (so a
  restarted engine starts from the newest values) but never the pod template: there is deliberately no
  hash of the whole config on the pod, because a risk-limit change must not restart a trading engine.
- RESTART fields -- `mode`, `broker`, `marketData`, `strategy`: the engine reads them once at start (a
  new broker session, a new feed, new strategy state). Their hash is a pod-template annotation
  (`trading.quantzoo.io/restart-inputs`), so changing one rolls the single engine replica.
- Image, resources and env are in the pod template itself: changing them rolls the pod too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from quantzoo_api.types import TradingSystemSpec

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata

ENGINE_KEY = "engine.json"
SAFETY_KEY = "safety.json"
MOUNT_PATH = "/etc/quantzoo"

LIVE_FIELDS = frozenset({"risk", "symbols", "safety"})
# spec.killSwitch is in neither: it is not in the ConfigMap at all (render).
RESTART_FIELDS = frozenset({"mode", "broker", "marketData", "strategy"})
RESTART_INPUTS_ANNOTATION = "trading.quantzoo.io/restart-inputs"


def spec_document(spec: TradingSystemSpec) -> dict[str, Any]:
    """The spec as JSON-ready camelCase, defaults filled in, unset optionals left out."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def render(system: System) -> str:
    spec = spec_document(system.spec)
    # No kill switch here: in a cluster the engine and the safety service take it from the TradingSystem
    # only (an engine stays halted until it has read it), so a copy would be a second, stale source of
    # truth -- and keeping it current would cost a ConfigMap write per engage on the kill path.
    spec.pop("killSwitch", None)
    doc = {"namespace": system.namespace, "name": system.name, "spec": spec}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def restart_inputs_hash(spec: TradingSystemSpec) -> str:
    """Hash of the fields the engine reads only at start (see the module docstring)."""
    doc = spec_document(spec)
    restart = {k: doc.get(k) for k in sorted(RESTART_FIELDS)}
    return hashlib.sha256(json.dumps(restart, sort_keys=True).encode()).hexdigest()[:16]


def build(system: System) -> dict[str, Any]:
    text = render(system)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(system, names.config(system.name), labels.CONFIG),
        "data": {ENGINE_KEY: text, SAFETY_KEY: text},
    }
