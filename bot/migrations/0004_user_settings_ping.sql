-- 0004: whether a member's finished images mention (ping) them, and finding a job from one of its messages.
-- Run by bot.store inside one transaction that also sets PRAGMA user_version = 4.

-- 1: the result message mentions its owner (the default); 0: it names them without a notification.
ALTER TABLE user_settings ADD COLUMN ping INTEGER NOT NULL DEFAULT 1 CHECK (ping IN (0, 1));

-- Reactions on the bot's messages (Store.job_by_message): which job does this status or result message show?
CREATE INDEX idx_jobs_status_message ON jobs (status_message_id) WHERE status_message_id IS NOT NULL;
CREATE INDEX idx_jobs_result_message ON jobs (result_message_id) WHERE result_message_id IS NOT NULL;
