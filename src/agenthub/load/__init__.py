"""`agenthub bench`: a load generator against a running agenthub server.

Virtual users (`user.py`) run the operation mix of `scenario.py` over REST while WebSocket
subscribers (`subscriber.py`) receive the events of the messages they post; `runner.py` drives
a run, `report.py` turns what `recorder.py` collected into figures, and `command.py` is the
command itself (progress bar, tables or JSON, exit status).
"""
