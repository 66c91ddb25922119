"""An example QuantZoo strategy package (see docs/STRATEGIES.md)."""
