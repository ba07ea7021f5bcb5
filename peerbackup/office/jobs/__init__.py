"""A backup node's jobs: asked of the coordinator, dispatched to an agent, run as the node.

`service` is the coordinator's side (JobService: requests, dispatch, reports, progress heartbeats),
with `scheduler` (schedules, missed slots, retries, redispatch, retention) and `logon` (act-as tokens);
`runner` the agent's side of a dispatched job (AgentRunner, which knows the coordinator only
through its CoordinatorSide protocol); `agent` runs the engine as the node; `adhoc` a backup
made by hand on an agent. Top of the office with alerts; never imported by the office below.
"""
