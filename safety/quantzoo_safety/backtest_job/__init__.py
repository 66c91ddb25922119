"""`kubectl quantzoo backtest`: a backtest run on the cluster as a Kubernetes Job.

manifests.py  the Job and the ConfigMap of bars (pure)
outcome.py    what a Job and its pod say: phase, failure reason, the report from the pod's log (pure)
command.py    the subcommand: arguments, pre-flight checks, the API calls, waiting
"""
