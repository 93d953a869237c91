"""The daily carbon report: aggregation of a day's ledger records (``daily``), the zones' actual signal curves
(``curves``) and rendering to HTML, PNG charts, CSV and JSON (``render``, ``charts``). Pure: no Airflow import;
matplotlib loads only when a chart is drawn.
"""
