-- 0002: a job's image prompt (img2img) gets its own column instead of a key inside request_json.
-- Run by bot.store inside one transaction that also sets PRAGMA user_version = 2.

-- JSON {"file", "width", "height"} (file relative to the output folder), NULL for a job without one.
ALTER TABLE jobs ADD COLUMN image_prompt TEXT CHECK (image_prompt IS NULL OR json_valid(image_prompt));

-- Move the "image_prompt" key of existing requests into the column. Only an object was ever read as an
-- image prompt; the key goes from request_json whatever it held.
UPDATE jobs
SET image_prompt = CASE WHEN json_type(request_json, '$.image_prompt') = 'object'
                        THEN json_extract(request_json, '$.image_prompt') END,
    request_json = json_remove(request_json, '$.image_prompt')
WHERE json_type(request_json, '$.image_prompt') IS NOT NULL;

-- Retention: which attached images do jobs still use? Only jobs with an image prompt are indexed.
CREATE INDEX idx_jobs_image_prompt_file ON jobs (json_extract(image_prompt, '$.file'))
    WHERE image_prompt IS NOT NULL;
