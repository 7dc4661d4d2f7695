-- The gallery: copies of generated files a user chose to keep until they delete them.

-- Gallery copies are stored objects of their own kind, with no expiry.
ALTER TABLE stored_objects DROP CONSTRAINT stored_objects_kind_check;
ALTER TABLE stored_objects ADD CONSTRAINT stored_objects_kind_check CHECK (kind IN ('upload', 'output', 'gallery'));

CREATE TABLE gallery_items (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The generation and output the item was saved from; the generation's own files
    -- may be purged later, the item stays.
    generation_id     TEXT NOT NULL,
    source_output_id  TEXT NOT NULL,
    object_id         TEXT NOT NULL REFERENCES stored_objects (id),
    kind              TEXT NOT NULL,
    style             TEXT NOT NULL,
    filename          TEXT NOT NULL,
    content_type      TEXT NOT NULL,
    bytes             BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
-- Saving the same output twice keeps one item.
CREATE UNIQUE INDEX gallery_items_source_key ON gallery_items (user_id, source_output_id);
CREATE INDEX gallery_items_user_created_idx ON gallery_items (user_id, created_at);
