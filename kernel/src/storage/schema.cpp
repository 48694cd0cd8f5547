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
      {2, "missions",
       R"sql(
-- Mission tables are a projection of the ledger's mission.* and step.* events, written in the
-- same transaction as the events; `kiln ledger replay` rebuilds them from the ledger alone.
CREATE TABLE missions (
  id              TEXT PRIMARY KEY,
  tenant          TEXT NOT NULL,
  template        TEXT NOT NULL,
  inputs          TEXT NOT NULL,
  state           TEXT NOT NULL,
  decision        TEXT NOT NULL,
  reason          TEXT NOT NULL,
  idempotency_key TEXT,
  created_by      TEXT NOT NULL,
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  not_before      TEXT,
  lease_owner     TEXT,
  lease_until     TEXT,
  claims          INTEGER NOT NULL DEFAULT 0,
  last_seq        INTEGER NOT NULL,
  terminal_seq    INTEGER
);
CREATE UNIQUE INDEX missions_by_key ON missions (tenant, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX missions_by_state ON missions (state, not_before);
CREATE INDEX missions_by_tenant ON missions (tenant, created_at);
CREATE TABLE mission_steps (
  mission_id  TEXT NOT NULL REFERENCES missions (id),
  step        TEXT NOT NULL,
  position    INTEGER NOT NULL,
  tool        TEXT NOT NULL,
  approval    TEXT NOT NULL,
  state       TEXT NOT NULL,
  attempts    INTEGER NOT NULL DEFAULT 0,
  approved_by TEXT,
  output      TEXT,
  error       TEXT,
  started_at  TEXT,
  finished_at TEXT,
  PRIMARY KEY (mission_id, step)
);
)sql"},
      {3, "api_keys",
       R"sql(
-- API keys: a projection of key.created / key.revoked ledger events. Only the SHA-256 of a key
-- is stored; the key itself is shown once, at creation.
CREATE TABLE api_keys (
  id         TEXT PRIMARY KEY,
  tenant     TEXT NOT NULL,
  role       TEXT NOT NULL,
  name       TEXT NOT NULL,
  hash       TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at TEXT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant);
)sql"},
      {4, "telemetry",
       R"sql(
-- Device keys: a projection of device.key_added / device.key_rotated / device.key_revoked.
CREATE TABLE device_keys (
  kid        TEXT PRIMARY KEY,
  tenant     TEXT NOT NULL,
  device     TEXT NOT NULL,
  public_key TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  not_after  TEXT,
  revoked_at TEXT
);
CREATE INDEX device_keys_by_device ON device_keys (tenant, device);
-- Accepted telemetry batches, one row per signed envelope, stored once per (device, boot, seq);
-- the ledger holds each batch's digest (telemetry.batch).
CREATE TABLE telemetry_batches (
  tenant      TEXT NOT NULL,
  device      TEXT NOT NULL,
  boot        INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  kid         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  sent_at     REAL NOT NULL,
  received_at TEXT NOT NULL,
  first_t     REAL NOT NULL,
  last_t      REAL NOT NULL,
  count       INTEGER NOT NULL,
  samples     TEXT NOT NULL,
  PRIMARY KEY (tenant, device, boot, seq)
) WITHOUT ROWID;
CREATE INDEX telemetry_by_time ON telemetry_batches (tenant, device, first_t);
-- Roast sessions: a projection of session.opened / session.closed. A session is a time range of
-- its device's samples.
CREATE TABLE telemetry_sessions (
  id           TEXT PRIMARY KEY,
  tenant       TEXT NOT NULL,
  device       TEXT NOT NULL,
  state        TEXT NOT NULL,
  start_t      REAL NOT NULL,
  charge_t     REAL NOT NULL,
  end_t        REAL,
  close_reason TEXT,
  opened_at    TEXT NOT NULL,
  closed_at    TEXT,
  mission_id   TEXT
);
CREATE INDEX telemetry_sessions_by_device ON telemetry_sessions (tenant, device, start_t);
)sql"},
      {5, "profiles",
       R"sql(
-- Roast profiles: a projection of profile.saved / profile.archived / profile.restored. Every save
-- is a new version; a version is never changed. The body is the roast plugin's profile JSON.
CREATE TABLE profiles (
  tenant     TEXT NOT NULL,
  name       TEXT NOT NULL,
  version    INTEGER NOT NULL,
  title      TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  body       TEXT NOT NULL,
  PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;
CREATE TABLE profile_names (
  tenant      TEXT NOT NULL,
  name        TEXT NOT NULL,
  latest      INTEGER NOT NULL,
  archived_at TEXT,
  PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
-- The profile a device roasts to (profile.assigned); a session opened on the device records it.
CREATE TABLE device_profiles (
  tenant  TEXT NOT NULL,
  device  TEXT NOT NULL,
  profile TEXT NOT NULL,
  set_at  TEXT NOT NULL,
  set_by  TEXT NOT NULL,
  PRIMARY KEY (tenant, device)
) WITHOUT ROWID;
ALTER TABLE telemetry_sessions ADD COLUMN profile TEXT;
ALTER TABLE telemetry_sessions ADD COLUMN profile_version INTEGER;
)sql"},
      {6, "telemetry_batches_by_arrival",
       R"sql(
-- Batches in arrival order (a rowid table) instead of a WITHOUT ROWID table keyed by device and
-- sequence: with many devices sending at once, keyed inserts landed on as many different leaf
-- pages, each commit rewrote all of them (WAL frames, checkpoints), and ~1 KB rows are ill suited
-- to WITHOUT ROWID anyway. Appends now touch the last page; the key is a unique index.
CREATE TABLE telemetry_batches_new (
  tenant      TEXT NOT NULL,
  device      TEXT NOT NULL,
  boot        INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  kid         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  sent_at     REAL NOT NULL,
  received_at TEXT NOT NULL,
  first_t     REAL NOT NULL,
  last_t      REAL NOT NULL,
  count       INTEGER NOT NULL,
  samples     TEXT NOT NULL
);
INSERT INTO telemetry_batches_new
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples
  FROM telemetry_batches ORDER BY received_at, tenant, device, boot, seq;
DROP TABLE telemetry_batches;
ALTER TABLE telemetry_batches_new RENAME TO telemetry_batches;
CREATE UNIQUE INDEX telemetry_batches_key ON telemetry_batches (tenant, device, boot, seq);
CREATE INDEX telemetry_by_time ON telemetry_batches (tenant, device, first_t);
)sql"},
      {7, "telemetry_inbox",
       R"sql(
-- Batches just stored: a rowid table without indexes, so a commit of batches from many devices
-- appends to its last page instead of touching two index leaves per device. The ingestor keeps
-- the inbox's keys in memory (duplicates and replays are still found) and moves the rows into
-- telemetry_batches in key order every few thousand batches or seconds, where one pass touches
-- each device's index leaves once. Readers use telemetry_all, both tables.
CREATE TABLE telemetry_inbox (
  tenant      TEXT NOT NULL,
  device      TEXT NOT NULL,
  boot        INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  kid         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  sent_at     REAL NOT NULL,
  received_at TEXT NOT NULL,
  first_t     REAL NOT NULL,
  last_t      REAL NOT NULL,
  count       INTEGER NOT NULL,
  samples     TEXT NOT NULL
);
CREATE VIEW telemetry_all AS
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples FROM telemetry_batches
  UNION ALL
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples FROM telemetry_inbox;
)sql"},
      {8, "telemetry_envelopes",
       R"sql(
-- A batch is kept as the signed envelope it arrived in (COSE_Sign1, CBOR), not re-encoded as a
-- JSON array of samples on the request thread: the row can be checked against its digest and its
-- signature, and storing it costs no encoding. Rows stored before keep their JSON `samples`;
-- exactly one of the two columns is set. Both tables are rebuilt (SQLite cannot drop a NOT NULL),
-- in the order their rows were stored.
DROP VIEW telemetry_all;
CREATE TABLE telemetry_batches_new (
  tenant      TEXT NOT NULL,
  device      TEXT NOT NULL,
  boot        INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  kid         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  sent_at     REAL NOT NULL,
  received_at TEXT NOT NULL,
  first_t     REAL NOT NULL,
  last_t      REAL NOT NULL,
  count       INTEGER NOT NULL,
  samples     TEXT,
  envelope    BLOB,
  CHECK ((samples IS NULL) <> (envelope IS NULL))
);
INSERT INTO telemetry_batches_new
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples, NULL
  FROM telemetry_batches ORDER BY rowid;
DROP TABLE telemetry_batches;
ALTER TABLE telemetry_batches_new RENAME TO telemetry_batches;
CREATE UNIQUE INDEX telemetry_batches_key ON telemetry_batches (tenant, device, boot, seq);
CREATE INDEX telemetry_by_time ON telemetry_batches (tenant, device, first_t);
CREATE TABLE telemetry_inbox_new (
  tenant      TEXT NOT NULL,
  device      TEXT NOT NULL,
  boot        INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  kid         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  sent_at     REAL NOT NULL,
  received_at TEXT NOT NULL,
  first_t     REAL NOT NULL,
  last_t      REAL NOT NULL,
  count       INTEGER NOT NULL,
  samples     TEXT,
  envelope    BLOB,
  CHECK ((samples IS NULL) <> (envelope IS NULL))
);
INSERT INTO telemetry_inbox_new
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples, NULL
  FROM telemetry_inbox ORDER BY rowid;
DROP TABLE telemetry_inbox;
ALTER TABLE telemetry_inbox_new RENAME TO telemetry_inbox;
CREATE VIEW telemetry_all AS
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples, envelope FROM telemetry_batches
  UNION ALL
  SELECT tenant, device, boot, seq, kid, digest, sent_at, received_at, first_t, last_t, count,
         samples, envelope FROM telemetry_inbox;
)sql"},
      {9, "session_boots",
       R"sql(
-- The device boots a session's readings come from: a device whose clock starts over when it
-- boots again shows the same times twice, and a session holds only its own boots' readings.
-- NULL for sessions opened before (their events carry no boots).
ALTER TABLE telemetry_sessions ADD COLUMN first_boot INTEGER;
ALTER TABLE telemetry_sessions ADD COLUMN last_boot INTEGER;
)sql"},
      {10, "session_drop",
       R"sql(
-- The DROP a session closed at (device time): the session ends a few readings later, where the
-- DROP was seen, and a roast's length runs from CHARGE to DROP. NULL when it closed otherwise,
-- and for sessions closed before.
ALTER TABLE telemetry_sessions ADD COLUMN drop_t REAL;
)sql"},
      {11, "session_reopens",
       R"sql(
-- How often a session closed for silence was opened again by readings that continued it (a
-- recorder's spool drained late): each close after a reopen starts its report mission anew.
ALTER TABLE telemetry_sessions ADD COLUMN reopens INTEGER NOT NULL DEFAULT 0;
)sql"},
      {12, "mission_artifacts",
       R"sql(
-- Files a mission step's tool returned beside its output (the roast report's spoken summary):
-- written in the transaction that records the step's completion, whose ledger event carries
-- each file's name, media type, size and SHA-256. A step that runs again replaces its files.
CREATE TABLE mission_artifacts (
  mission_id TEXT NOT NULL,
  step       TEXT NOT NULL,
  name       TEXT NOT NULL,
  media_type TEXT NOT NULL,
  bytes      INTEGER NOT NULL,
  sha256     TEXT NOT NULL,
  created_at TEXT NOT NULL,
  data       BLOB NOT NULL,
  PRIMARY KEY (mission_id, step, name)
);  -- a rowid table: WITHOUT ROWID suits small rows, and these are files
)sql"},
      {13, "session_marks",
       R"sql(
-- Events a roaster marked on a session (session.marked: first crack is heard, not seen), as a
-- JSON object of event name to device time, e.g. {"FCs": 1764771234.5}. The analysis of the
-- session takes a marked event over the detector's.
ALTER TABLE telemetry_sessions ADD COLUMN marks TEXT NOT NULL DEFAULT '{}';
)sql"},
      {14, "session_weights",
       R"sql(
-- The batch's weights a roaster entered (session.weighed): green beans charged and roasted beans
-- out, in grams; NULL until weighed. Their loss is the roast's weight loss.
ALTER TABLE telemetry_sessions ADD COLUMN green_g REAL;
ALTER TABLE telemetry_sessions ADD COLUMN roasted_g REAL;
)sql"},
      {15, "device_keys_per_tenant",
       R"sql(
-- A key id is a tenant's: one tenant registering another's public key first no longer blocks
-- the tenant whose device it is. Rebuilt, as SQLite cannot change a primary key in place.
CREATE TABLE device_keys_by_tenant (
  kid        TEXT NOT NULL,
  tenant     TEXT NOT NULL,
  device     TEXT NOT NULL,
  public_key TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  not_after  TEXT,
  revoked_at TEXT,
  PRIMARY KEY (tenant, kid)
);
INSERT INTO device_keys_by_tenant
  SELECT kid, tenant, device, public_key, created_at, created_by, not_after, revoked_at
  FROM device_keys;
DROP TABLE device_keys;
ALTER TABLE device_keys_by_tenant RENAME TO device_keys;
CREATE INDEX device_keys_by_device ON device_keys (tenant, device);
)sql"},
      {16, "session_report_due",
       R"sql(
-- When a session's report became due (its close, or a roaster's change asking for it again),
-- until a mission is recorded for it (session.reported): a report the process stopped before
-- starting is started later. Sessions closed without a report before now are due since then.
ALTER TABLE telemetry_sessions ADD COLUMN report_due TEXT;
UPDATE telemetry_sessions SET report_due = closed_at WHERE state = 'closed' AND mission_id IS NULL;
CREATE INDEX telemetry_sessions_report_due ON telemetry_sessions (report_due)
  WHERE report_due IS NOT NULL;
)sql"},
  };
  return migrations;
}

}  // namespace kiln::storage
