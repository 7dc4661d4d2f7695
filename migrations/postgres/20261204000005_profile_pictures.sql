-- Profile pictures are our own objects (fetched once at sign-in), so no page makes a
-- browser contact the identity provider.
ALTER TABLE stored_objects DROP CONSTRAINT stored_objects_kind_check;
ALTER TABLE stored_objects ADD CONSTRAINT stored_objects_kind_check
    CHECK (kind IN ('upload', 'output', 'gallery', 'picture'));
