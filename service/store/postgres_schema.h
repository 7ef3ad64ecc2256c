#pragma once

#include <string_view>

namespace floodgate::store {

class PgConnection;

/// One step of the PostgreSQL schema: version N takes the schema from N - 1 to N.
struct PgMigration {
  int version;
  std::string_view name;
  std::string_view sql;
};

/// Schema version this build writes.
inline constexpr int kPostgresSchemaVersion = 4;

/// Brings the schema of the connection's database (its current schema, by default "public")
/// up to kPostgresSchemaVersion: every missing migration in one transaction, each recorded as a
/// row of schema_migrations. Several processes may call it at once: a transaction-scoped
/// advisory lock makes the others wait, then find nothing left to do. Throws StoreError when
/// the database holds another program's tables or a newer schema than this build knows.
void migrate_postgres(PgConnection& conn);

/// Reads the highest applied version (0 for an empty database).
int postgres_schema_version(PgConnection& conn);

}  // namespace floodgate::store
