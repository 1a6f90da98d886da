-- 0003: who drives each ComfyUI backend. With SQLite one process runs the bot (bot.instance_lock), so
-- its own leases are always granted; the table keeps the Store contract the same on every engine.
CREATE TABLE backend_leases (
    backend     TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  REAL NOT NULL
) WITHOUT ROWID;
