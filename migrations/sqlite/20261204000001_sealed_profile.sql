-- Personal fields are sealed at rest (core/src/sealing.rs): `email`, `name`,
-- `picture_url` and the new `subject` hold `pp1.{key id}.{ciphertext}`, bound to their
-- row and column. Accounts are keyed by a blind index of the identity provider's
-- issuer and subject (dev sign-in: `dev` and the e-mail), e-mails are found through a
-- blind index of their own. Rows written before this migration are sealed by
-- `petportrait migrate` (and the embedded start) right after it runs.
ALTER TABLE users ADD COLUMN subject TEXT;
ALTER TABLE users ADD COLUMN subject_index TEXT;
ALTER TABLE users ADD COLUMN email_index TEXT;
DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_subject_index_key ON users (subject_index);
CREATE INDEX users_email_index_idx ON users (email_index);
