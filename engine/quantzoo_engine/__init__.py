"""quantzoo_engine: the trading engine service (design.md, "Engine").

Where things live, by the words traders use:
  feed/       market data (simulated, replay, alpaca) and the data-quality guard
  sdk/        what a strategy implements (Strategy, StrategyParams, OrderIntent) and the registry that
              finds strategies by name (entry-point group quantzoo.strategies)
  strategy/   the shipped strategies, and runner.py: inline or in a process of its own
  backtest/   historical bars through this engine on a simulated clock, and the report
  risk/       pre-trade checks; risk/checks.py is where an order is refused
  broker/     where orders go (paper, alpaca, dry_run)
  state.py    ACTIVE / REDUCE_ONLY / HALTED
  killswitch.py  the engine's side of the kill switch (which commands count)
  engine.py   the trading loop that ties them together
  api/        HTTP: the runbook's public endpoints and the authenticated admin ones
  cli.py      `quantzoo strategies | backtest | sample-bars`
"""
