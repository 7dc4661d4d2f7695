-- The user's current profile picture, one of their stored objects (kind 'picture').
ALTER TABLE users ADD COLUMN picture_object_id TEXT;
