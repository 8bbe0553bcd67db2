"""Real parts for the tests: the CNCF distribution registry, PostgreSQL, and real JAR files."""
