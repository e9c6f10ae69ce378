BEGIN TRANSACTION;
CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL);
INSERT INTO "_migrations" VALUES('0001_initial','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0002_enrolment','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0003_unit_profiles','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0004_quarantine','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0005_audit_log','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0006_people_and_access','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0007_profile_versions','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0008_web_console','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0009_sealing','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0010_blob_sm3','2026-11-01T08:00:00.000Z');
INSERT INTO "_migrations" VALUES('0011_transfer','2026-11-01T08:00:00.000Z');
CREATE TABLE audit_checkpoints (
            tree_size INTEGER PRIMARY KEY,
            body BLOB NOT NULL,
            signature BLOB NOT NULL);
CREATE TABLE audit_entries (
            idx INTEGER PRIMARY KEY,
            event TEXT NOT NULL,
            subject TEXT NOT NULL,
            entry BLOB NOT NULL);
CREATE TABLE audit_nodes (
            level INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            hash BLOB NOT NULL,
            PRIMARY KEY (level, idx));
CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            bytes INTEGER NOT NULL,
            stored_at TEXT NOT NULL, sm3 TEXT);
CREATE TABLE bundles (
            id TEXT PRIMARY KEY,
            station_id TEXT NOT NULL REFERENCES stations (id),
            manifest BLOB NOT NULL,
            signature BLOB NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('offered', 'committed', 'rejected')),
            offered_at TEXT NOT NULL,
            committed_at TEXT,
            problems TEXT,
            receipt BLOB,
            receipt_signature BLOB);
CREATE TABLE changes (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            payload TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('proposed', 'applied', 'refused')),
            proposed_by TEXT NOT NULL,
            proposed_at TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT);
CREATE TABLE consultations (
            id INTEGER PRIMARY KEY,
            reader TEXT NOT NULL REFERENCES users (id),
            archive_no TEXT NOT NULL,
            purpose TEXT NOT NULL,
            days INTEGER NOT NULL,
            export_requested INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'refused')),
            export_state TEXT NOT NULL CHECK (export_state IN ('none', 'requested', 'approved', 'refused')),
            filed_at TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT,
            decision_reason TEXT,
            expires_at TEXT,
            export_decided_by TEXT);
CREATE TABLE dossiers (
            archive_no TEXT PRIMARY KEY,
            name TEXT,
            unit TEXT NOT NULL,
            created_at TEXT NOT NULL, sex TEXT, birth_date TEXT, post TEXT, kind TEXT NOT NULL DEFAULT 'personnel', sealed_by_change INTEGER REFERENCES changes (id), transferred_by_change INTEGER REFERENCES changes (id), transferred_to TEXT);
CREATE TABLE enrolments (
            code TEXT PRIMARY KEY,
            station_id TEXT NOT NULL,
            public_key BLOB NOT NULL UNIQUE,
            hostname TEXT NOT NULL,
            requested_at TEXT NOT NULL);
CREATE TABLE material_versions (
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            version INTEGER NOT NULL,
            bundle_id TEXT NOT NULL,
            title TEXT NOT NULL,
            page_count INTEGER NOT NULL,
            pages TEXT NOT NULL,
            catalogued_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            ended_how TEXT NOT NULL CHECK (ended_how IN ('replaced', 'withdrawn')),
            change_id INTEGER NOT NULL REFERENCES changes (id),
            PRIMARY KEY (archive_no, item, version));
CREATE TABLE materials (
            id INTEGER PRIMARY KEY,
            archive_no TEXT NOT NULL REFERENCES dossiers (archive_no),
            item TEXT NOT NULL,
            category TEXT NOT NULL,
            title TEXT NOT NULL,
            date_formed TEXT,
            page_count INTEGER NOT NULL,
            remarks TEXT,
            bundle_id TEXT NOT NULL UNIQUE REFERENCES bundles (id),
            catalogued_at TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1,
            UNIQUE (archive_no, item));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pages (
            material_id INTEGER NOT NULL REFERENCES materials (id),
            n INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES blobs (sha256),
            bytes INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            width_px INTEGER NOT NULL,
            height_px INTEGER NOT NULL,
            dpi INTEGER NOT NULL,
            colour TEXT NOT NULL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (material_id, n));
CREATE TABLE profile_versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            content BLOB NOT NULL,
            path TEXT NOT NULL,
            first_used_at TEXT NOT NULL,
            PRIMARY KEY (name, version));
CREATE TABLE qc_batches (
            bundle_id TEXT PRIMARY KEY REFERENCES bundles (id),
            station_id TEXT NOT NULL,
            operator TEXT NOT NULL,
            inspector TEXT NOT NULL,
            sample TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sampling', 'accepted', 'returned')),
            started_at TEXT NOT NULL,
            decided_at TEXT,
            good_share REAL);
CREATE TABLE qc_judgements (
            bundle_id TEXT NOT NULL REFERENCES qc_batches (bundle_id),
            n INTEGER NOT NULL,
            good INTEGER NOT NULL,
            reason TEXT,
            judged_at TEXT NOT NULL,
            PRIMARY KEY (bundle_id, n));
CREATE TABLE quarantine (
            bundle_id TEXT PRIMARY KEY REFERENCES bundles (id),
            station_id TEXT NOT NULL,
            unit TEXT NOT NULL,
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            profile TEXT,
            profile_version INTEGER,
            reasons TEXT NOT NULL,
            quarantined_at TEXT NOT NULL, released_by_change INTEGER REFERENCES changes (id), profile_sha256 TEXT);
CREATE TABLE signin_failures (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            last_at TEXT NOT NULL,
            locked_until TEXT);
CREATE TABLE station_notices (
            id INTEGER PRIMARY KEY,
            station_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL);
CREATE TABLE stations (
            id TEXT PRIMARY KEY,
            public_key BLOB NOT NULL UNIQUE,
            unit TEXT NOT NULL,
            added_at TEXT NOT NULL,
            revoked_at TEXT, revoked_by TEXT, suspended_at TEXT);
CREATE TABLE unit_profiles (
            unit TEXT PRIMARY KEY,
            profile TEXT NOT NULL,
            assigned_at TEXT NOT NULL);
CREATE TABLE units (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            dossiers_expected INTEGER,
            created_at TEXT NOT NULL);
CREATE TABLE user_relations (
            user_id TEXT NOT NULL REFERENCES users (id),
            archive_no TEXT NOT NULL,
            relation TEXT NOT NULL,
            PRIMARY KEY (user_id, archive_no));
CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            units TEXT NOT NULL,
            own_archive_no TEXT,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            disabled_at TEXT, password_hash TEXT, password_must_change INTEGER NOT NULL DEFAULT 0, password_set_at TEXT);
CREATE TABLE web_sessions (
            token_sha256 TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id),
            csrf TEXT NOT NULL,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            ended_at TEXT,
            ended_how TEXT);
CREATE INDEX audit_entries_subject ON audit_entries (event, subject);
CREATE TRIGGER audit_entries_append_only_update BEFORE UPDATE ON audit_entries
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entries_append_only_delete BEFORE DELETE ON audit_entries
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_nodes_append_only_update BEFORE UPDATE ON audit_nodes
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_nodes_append_only_delete BEFORE DELETE ON audit_nodes
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_append_only_update BEFORE UPDATE ON audit_checkpoints
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_append_only_delete BEFORE DELETE ON audit_checkpoints
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX web_sessions_user ON web_sessions (user_id, ended_at);
COMMIT;
