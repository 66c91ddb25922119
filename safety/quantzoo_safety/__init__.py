"""quantzoo_safety: the safety service (port 8888) and the `kubectl quantzoo` plugin.

Where things are (one concern per module):
    settings.py       every setting, from env / QUANTZOO_CONFIG
    auth.py           where the bearer token is checked (constant time, rotation via file)
    api.py            the runbook endpoints and the probes
    killswitch.py     activate / deactivate: TradingSystem patch + direct engine halt
    engagement.py     pure rules: engage, already engaged (keep who/why), escalate, release
    kube.py           all Kubernetes access (get / merge-patch / read status of the TradingSystem)
    observe.py        reading the engine's /state and the TradingSystem, with deadlines
    watchdog.py       automatic trips (pure `decide()` + the loop)
    status.py         what /status and /test/safety-check report
    audit.py          the audit log (JSON lines, file + log stream, never a token)
    middleware.py     per-request audit entry, request metrics, JSON 503 instead of any 500
    errors.py         readable 422s
    metrics.py        Prometheus metrics (names in docs/metrics.md)
    app.py            wiring and lifespan (starts the watchdog)
    context.py        the object holding the parts
    __main__.py       `python -m quantzoo_safety` / `quantzoo-safety`
    kubectl_plugin.py `kubectl-quantzoo kill|release|status`

Environment:
    QUANTZOO_NAMESPACE, QUANTZOO_NAME   its TradingSystem (or "namespace"/"name" in QUANTZOO_CONFIG)
    QUANTZOO_CONFIG                     optional JSON/YAML file {"namespace", "name", "spec": {...}}
    QUANTZOO_KUBERNETES=0               standalone: no API server; the engine is halted and released directly
    KUBECONFIG                          else in-cluster service account
    ENGINE_URL                          default http://127.0.0.1:8001
    ENGINE_ADMIN_TOKEN / ENGINE_ADMIN_TOKEN_FILE   the engine's admin token (not the safety token);
                                        the file wins and is re-read on change
    SAFETY_API_TOKEN / SAFETY_API_TOKEN_FILE   the bearer token; the file wins and is re-read on change
    SAFETY_AUDIT_LOG                    audit file (JSON lines); always also on the log stream
    SAFETY_PORT (8888), SAFETY_KUBE_TIMEOUT_SECONDS (2), SAFETY_ENGINE_TIMEOUT_SECONDS (2)
    SAFETY_AUTO_TRIP_ENABLED, SAFETY_HEARTBEAT_TIMEOUT_SECONDS, SAFETY_CHECK_INTERVAL_SECONDS,
    SAFETY_MAX_REJECTS_PER_MINUTE, SAFETY_MAX_ERRORS_PER_MINUTE, SAFETY_MAX_DAILY_DRAWDOWN_PCT,
    SAFETY_STALE_DATA_SECONDS, SAFETY_STARTUP_GRACE_SECONDS
        overrides of the automatic-trip limits, which otherwise come from the live TradingSystem
        (spec.safety.autoTrip, spec.risk.maxDailyDrawdownPct, spec.risk.staleDataSeconds)
"""
