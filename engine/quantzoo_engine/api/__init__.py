"""HTTP, grouped by audience: `public` (the runbook's endpoints, read-only) and `admin` (bearer token)."""
