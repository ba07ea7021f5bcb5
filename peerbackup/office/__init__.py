"""The office: membership, liveness, and (later issues) election, logs and jobs."""
