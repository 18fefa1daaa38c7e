"""Reports as researchers publish them: per-class tables, confusion matrices, sweep tables.

Data flows one way into here: predictions and metrics of an evaluation -> files of its run
(`checkpoint_report.py`), those files -> a sweep's `results.md` (`sweep.py`) and the wandb run
(`dashboard.py`); a collection's audit -> `audit.md` and `audit.csv` (`audit_report.py`).
"""
