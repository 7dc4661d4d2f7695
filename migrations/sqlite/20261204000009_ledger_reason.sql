-- An operator's grant or revocation (`petportrait credits grant|revoke`) says why.
ALTER TABLE credit_ledger ADD COLUMN reason TEXT;
