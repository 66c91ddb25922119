"""quantzoo_engine: the trading engine service (design.md, "Engine").

Where things live, by the words traders use:
  feed/       market data (simulated, replay, alpaca) and the data-quality guard
  strategy/   signals (moving-average crossover, noop)
  risk/       pre-trade checks; risk/checks.py is where an order is refused
  broker/     where orders go (paper, alpaca, dry_run)
  state.py    ACTIVE / REDUCE_ONLY / HALTED
  killswitch.py  the engine's side of the kill switch (which commands count)
  engine.py   the trading loop that ties them together
  api/        HTTP: the runbook's public endpoints and the authenticated admin ones
"""
