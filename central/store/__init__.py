"""Storage: the only modules with SQL or object-store calls. One module owns each table (or a tight
family of tables); the blob store offers has/stat/open/put; nothing here knows a use case."""
