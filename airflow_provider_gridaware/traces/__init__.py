"""The pure trace model: load grid traces (CSV), replay them at any time, add seeded forecast error.

No HTTP and no Airflow: the CSV replay source (``sources/replay.py``) and the local grid simulator
(``simulator/``) both build on it. ``trace`` loads and checks traces, ``timeline`` replays them (anchored
to now and looping, or at their own times), ``forecast`` adds forecast error growing with lead time, and
``clock`` is a settable clock.
"""
