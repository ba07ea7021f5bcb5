"""Sending alerts: the coordinator's rounds and the channels (webhook, e-mail).

What to alert and when is core/alerts.py's; `rounds` gathers what the coordinator knows and
records each attempt in the control log. Top of the office with jobs, independent of it.
"""
