-- Tells every instance which call changed, at commit: each forgets what it
-- kept of that call for join tokens (`calls::join_cache`). Row triggers;
-- PostgreSQL folds identical notifications of one transaction into one.
create function callgate_call_changed() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform pg_notify('callgate_call_changed', old.id::text);
    else
        perform pg_notify('callgate_call_changed', new.id::text);
    end if;
    return null;
end
$$;

create function callgate_participant_changed() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform pg_notify('callgate_call_changed', old.call_id::text);
    else
        perform pg_notify('callgate_call_changed', new.call_id::text);
    end if;
    return null;
end
$$;

create trigger calls_changed after insert or update or delete on calls
    for each row execute function callgate_call_changed();
create trigger call_participants_changed after insert or update or delete on call_participants
    for each row execute function callgate_participant_changed();
