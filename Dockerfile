# knit-airflow on the official Airflow image: the provider (with its plugin and SQL), the
# simulator for the demo profile, and the DAGs. Build: docker compose build
FROM apache/airflow:3.3.2

# Runtime pins first, so a code change does not reinstall the dependencies.
COPY --chown=airflow:0 requirements.txt /opt/knit-airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/knit-airflow/requirements.txt

# The provider (knit-airflow: knit_provider with its SQL, plugin and connection type): installed,
# not copied into plugins/, so Airflow finds the plugin and the connection type through the entry
# points once. The devtools distribution (include/: knit_simulator, knit_devtools) is installed too,
# only because the demo profile of docker-compose.yaml runs the simulator from this image; an image
# for production can leave out its COPY and its path below.
COPY --chown=airflow:0 pyproject.toml README.md /opt/knit-airflow/
COPY --chown=airflow:0 plugins /opt/knit-airflow/plugins
COPY --chown=airflow:0 include /opt/knit-airflow/include
RUN pip install --no-cache-dir --no-deps /opt/knit-airflow /opt/knit-airflow/include

COPY --chown=airflow:0 dags /opt/airflow/dags
