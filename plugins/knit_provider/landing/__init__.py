"""The landing store: schema, migrations and the database connection it is reached by."""
