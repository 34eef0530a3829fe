-- Answers to a video request are sealed: a request's outcome is decided once
-- every answer it waits for is in, and written as its own step. `declined`
-- is that outcome when one of the answers is no (the answers themselves stay
-- `consent`, `reject` and `revoke`, read only by `admin` and by whoever gave
-- them).
alter table consent_ledger drop constraint consent_ledger_kind_check;
alter table consent_ledger add constraint consent_ledger_kind_check
    check (kind in ('request', 'consent', 'reject', 'declined', 'expire', 'revoke', 'withdraw', 'on', 'off', 'violation'));
