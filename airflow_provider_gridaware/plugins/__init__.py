"""The provider's Airflow UI plugin: the Grid page (see ``docs/ui.md``)."""
