-- 0001: jobs, their outputs, per-user settings and the round-robin dispatch state.
-- Run by bot.store inside one transaction that also sets PRAGMA user_version = 1.
-- Times are unix seconds as REAL (UTC). Discord snowflakes are INTEGER.

CREATE TABLE jobs (
    -- AUTOINCREMENT: an id is never reused, even after retention deletes the newest rows,
    -- because ids end up in Discord custom_ids and messages.
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The first job id of the enqueue_many call (one member command) that created this job.
    batch_id            INTEGER,
    guild_id            INTEGER NOT NULL,
    channel_id          INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    -- Checked in Python (JobKind), not here, so a new kind needs no table rebuild.
    kind                TEXT    NOT NULL,
    action              TEXT,
    parent_job_id       INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    parent_index        INTEGER,
    prompt              TEXT    NOT NULL,
    request_json        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(request_json)),
    -- NULL: any backend can run the job.
    model               TEXT,
    status              TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'submitted', 'running', 'completed', 'failed', 'cancelled')),
    backend             TEXT,
    -- ComfyUI's prompt id, chosen by the bot and stored before the prompt is posted.
    prompt_id           TEXT,
    progress            REAL    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    error               TEXT,
    status_channel_id   INTEGER,
    status_message_id   INTEGER,
    result_channel_id   INTEGER,
    result_message_id   INTEGER,
    attempts            INTEGER NOT NULL DEFAULT 0,
    created_at          REAL    NOT NULL,
    -- FIFO key inside a user's queue; a re-queue keeps the original so the job goes first again.
    queued_at           REAL    NOT NULL,
    submitted_at        REAL,
    started_at          REAL,
    finished_at         REAL
);

-- Claiming: one user's waiting jobs in FIFO order (also positions and per-guild queue counts).
-- bot.store names idx_jobs_queued* and idx_dispatch_*_next in INDEXED BY clauses: keep the names.
CREATE INDEX idx_jobs_queued ON jobs (guild_id, user_id, queued_at, id) WHERE status = 'queued';
-- Claiming for a backend that has only some models: "does this guild/user have a runnable job?"
CREATE INDEX idx_jobs_queued_model ON jobs (guild_id, model, user_id) WHERE status = 'queued';
-- Per-user active caps and /cancel autocomplete.
CREATE INDEX idx_jobs_active ON jobs (guild_id, user_id)
    WHERE status IN ('queued', 'submitted', 'running');
-- Restart reconciliation.
CREATE INDEX idx_jobs_in_flight ON jobs (backend) WHERE status IN ('submitted', 'running');
CREATE UNIQUE INDEX idx_jobs_prompt_id ON jobs (prompt_id) WHERE prompt_id IS NOT NULL;
CREATE INDEX idx_jobs_guild ON jobs (guild_id, id);
-- Per-minute rate limits and a member's history.
CREATE INDEX idx_jobs_user_created ON jobs (user_id, created_at);
-- Foreign key actions and the purge's "no in-flight children" test.
CREATE INDEX idx_jobs_parent ON jobs (parent_job_id);
CREATE INDEX idx_jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX idx_jobs_guild_finished ON jobs (guild_id, finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_outputs (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    path        TEXT    NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    bytes       INTEGER NOT NULL CHECK (bytes >= 0),
    created_at  REAL    NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

-- Midjourney-style settings follow the member across servers, so the key is user_id alone.
CREATE TABLE user_settings (
    user_id     INTEGER PRIMARY KEY,
    model       TEXT,
    aspect      TEXT,
    style       TEXT,
    negative    TEXT,
    updated_at  REAL NOT NULL
);

-- Round-robin state. `waiting` counts queued jobs (kept by the triggers below, whoever writes);
-- `served_seq` is the dispatch counter value of the last claim served (0: never served);
-- `joined_seq` (the first job id seen) breaks ties between never-served rows by arrival.
-- The claim picks the guild with the oldest service among guilds with waiting jobs, then the
-- user with the oldest service in that guild, then that user's oldest job.
CREATE TABLE dispatch_guilds (
    guild_id    INTEGER PRIMARY KEY,
    waiting     INTEGER NOT NULL DEFAULT 0 CHECK (waiting >= 0),
    served_seq  INTEGER NOT NULL DEFAULT 0,
    joined_seq  INTEGER NOT NULL
);
CREATE INDEX idx_dispatch_guilds_next ON dispatch_guilds (served_seq, joined_seq) WHERE waiting > 0;

CREATE TABLE dispatch_users (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    waiting     INTEGER NOT NULL DEFAULT 0 CHECK (waiting >= 0),
    served_seq  INTEGER NOT NULL DEFAULT 0,
    joined_seq  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;
CREATE INDEX idx_dispatch_users_next ON dispatch_users (guild_id, served_seq, joined_seq)
    WHERE waiting > 0;

CREATE TABLE dispatch_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    served_seq  INTEGER NOT NULL
);
INSERT INTO dispatch_state (id, served_seq) VALUES (1, 0);

CREATE TRIGGER jobs_waiting_on_insert AFTER INSERT ON jobs WHEN NEW.status = 'queued'
BEGIN
    INSERT INTO dispatch_guilds (guild_id, waiting, joined_seq) VALUES (NEW.guild_id, 1, NEW.id)
        ON CONFLICT (guild_id) DO UPDATE SET waiting = waiting + 1;
    INSERT INTO dispatch_users (guild_id, user_id, waiting, joined_seq)
        VALUES (NEW.guild_id, NEW.user_id, 1, NEW.id)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET waiting = waiting + 1;
END;

CREATE TRIGGER jobs_waiting_on_delete AFTER DELETE ON jobs WHEN OLD.status = 'queued'
BEGIN
    UPDATE dispatch_guilds SET waiting = waiting - 1 WHERE guild_id = OLD.guild_id;
    UPDATE dispatch_users SET waiting = waiting - 1
        WHERE guild_id = OLD.guild_id AND user_id = OLD.user_id;
END;

CREATE TRIGGER jobs_waiting_on_leave AFTER UPDATE OF status ON jobs
    WHEN OLD.status = 'queued' AND NEW.status <> 'queued'
BEGIN
    UPDATE dispatch_guilds SET waiting = waiting - 1 WHERE guild_id = OLD.guild_id;
    UPDATE dispatch_users SET waiting = waiting - 1
        WHERE guild_id = OLD.guild_id AND user_id = OLD.user_id;
END;

CREATE TRIGGER jobs_waiting_on_return AFTER UPDATE OF status ON jobs
    WHEN OLD.status <> 'queued' AND NEW.status = 'queued'
BEGIN
    INSERT INTO dispatch_guilds (guild_id, waiting, joined_seq) VALUES (NEW.guild_id, 1, NEW.id)
        ON CONFLICT (guild_id) DO UPDATE SET waiting = waiting + 1;
    INSERT INTO dispatch_users (guild_id, user_id, waiting, joined_seq)
        VALUES (NEW.guild_id, NEW.user_id, 1, NEW.id)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET waiting = waiting + 1;
END;

-- A claim (queued -> submitted) is a service: stamp the guild and the user with a fresh counter
-- value, which sends both to the back of their round robins.
CREATE TRIGGER jobs_served_on_claim AFTER UPDATE OF status ON jobs
    WHEN OLD.status = 'queued' AND NEW.status = 'submitted'
BEGIN
    UPDATE dispatch_state SET served_seq = served_seq + 1 WHERE id = 1;
    UPDATE dispatch_guilds SET served_seq = (SELECT served_seq FROM dispatch_state WHERE id = 1)
        WHERE guild_id = NEW.guild_id;
    UPDATE dispatch_users SET served_seq = (SELECT served_seq FROM dispatch_state WHERE id = 1)
        WHERE guild_id = NEW.guild_id AND user_id = NEW.user_id;
END;

-- The waiting counts above depend on who owns a job never changing.
CREATE TRIGGER jobs_owner_is_fixed BEFORE UPDATE OF guild_id, user_id ON jobs
    WHEN OLD.guild_id IS NOT NEW.guild_id OR OLD.user_id IS NOT NEW.user_id
BEGIN
    SELECT RAISE(ABORT, 'a job''s guild_id and user_id never change');
END;

-- Defence in depth for bot.jobs.TRANSITIONS (same pairs; terminal states never move).
CREATE TRIGGER jobs_status_transition BEFORE UPDATE OF status ON jobs
    WHEN OLD.status <> NEW.status AND OLD.status || '>' || NEW.status NOT IN (
        'queued>submitted', 'queued>cancelled', 'queued>failed',
        'submitted>running', 'submitted>queued', 'submitted>completed', 'submitted>failed',
        'submitted>cancelled',
        'running>completed', 'running>failed', 'running>cancelled', 'running>queued'
    )
BEGIN
    SELECT RAISE(ABORT, 'illegal job status transition');
END;
