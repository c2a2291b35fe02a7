"""Alerts (DESIGN.md section 8): channels from config.toml, rules deciding which alerts a run's
events cause, and a sender process that follows the run_events outbox and delivers them.

Nothing here is imported by the CLI's fast paths or the scheduling loop except `config` (the
validation of config.toml) and `link` (starting the sender); Apprise is imported by `channels`
only, inside the sender process.
"""
