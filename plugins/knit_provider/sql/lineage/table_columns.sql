-- The columns of the tables a task reads or writes, for OpenLineage's schema facet. The column order
-- is what airflow.providers.openlineage.utils.sql.parse_query_result reads: schema, table, column,
-- position, type (udt_name: Postgres' own type names, as Airflow's SQL lineage reports them).
SELECT c.table_schema, c.table_name, c.column_name, c.ordinal_position, c.udt_name
FROM information_schema.columns c
JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS t(table_schema, table_name)
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name
ORDER BY c.table_schema, c.table_name, c.ordinal_position
