-- Uploads are stored without their metadata (EXIF included), so the orientation the
-- EXIF gave is kept here: 1-8 as EXIF numbers it. NULL for uploads stored before this
-- change, whose file still carries its own.
ALTER TABLE uploads ADD COLUMN orientation BIGINT;
