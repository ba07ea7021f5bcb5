"""Sending alerts: the coordinator's rounds and the channels (webhook, e-mail).

What to alert and when is core/alerts.py's; `rounds` gathers what the coordinator knows, sends and
records each attempt in the control log; `channels` delivers one alert on the webhook and by e-mail.
Top of the office with jobs, independent of it.
"""
