"""The Knit syncs page in Airflow's UI: data (``syncs``), HTML (``page``) and the authenticated app (``app``)."""
