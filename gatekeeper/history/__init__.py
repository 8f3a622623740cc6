"""Build history: SQL tables of buildsets and builds (SQLite by default, PostgreSQL by URL), with migrations."""
