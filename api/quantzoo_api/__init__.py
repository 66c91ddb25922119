"""What the QuantZoo components share: the TradingSystem types and the kill-switch contract.

Side-effect free on import: no I/O, no logging set-up, no clients.
"""

GROUP = "trading.quantzoo.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TradingSystem"
PLURAL = "tradingsystems"
SHORT_NAME = "ts"

ENGINE_PORT = 8001
SAFETY_PORT = 8888
