#include "storage/schema.hpp"

namespace kiln::storage {

const std::vector<Migration>& kernel_migrations() {
  static const std::vector<Migration> migrations = {
      {1, "ledger",
       R"sql(
CREATE TABLE ledger (
  seq       INTEGER PRIMARY KEY,
  time      TEXT NOT NULL,
  tenant    TEXT NOT NULL,
  stream    TEXT NOT NULL,
  kind      TEXT NOT NULL,
  payload   TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL
);
CREATE INDEX ledger_by_stream ON ledger (tenant, stream, seq);
-- Append-only: the chain is the audit trail, so the database refuses edits as well.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
)sql"},
  };
  return migrations;
}

}  // namespace kiln::storage
