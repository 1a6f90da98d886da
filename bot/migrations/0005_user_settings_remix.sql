-- 0005: Remix (a member's setting) and /blend (the images a blend job mixes).
-- Run by bot.store inside one transaction that also sets PRAGMA user_version = 5.

-- remix = 1: follow-ups (V, reroll, vary, zoom, pan) first ask for the prompt, prefilled with the parent's.
ALTER TABLE user_settings ADD COLUMN remix INTEGER NOT NULL DEFAULT 0 CHECK (remix IN (0, 1));

-- A blend job's images: a JSON list of {"file", "width", "height"} like `image_prompt` (files relative to
-- the output folder, under image_prompts/), in the order they are mixed; NULL for every other job.
ALTER TABLE jobs ADD COLUMN blend_images TEXT
    CHECK (blend_images IS NULL OR (json_valid(blend_images) AND json_type(blend_images) = 'array'));

-- Retention: which attached images do blends still use? Covers the query, over blend jobs only.
CREATE INDEX idx_jobs_blend_images ON jobs (blend_images) WHERE blend_images IS NOT NULL;
