/* The outbox write: one row of events per state change, in the change's
 * transaction. The SQL function builds the data from the views
 * (sql/017_write_path_triggers.sql), unless the caller has it. */
#include "mb_events.h"

mb_err mb_event(mb_db *db, const char *partner_id, const char *type, const char *subject_type,
                const char *subject_id, const char *request_id, const char *extra_json)
{
    const char *p[] = {partner_id, type, subject_type, subject_id, request_id, extra_json};
    return mb_db_defer(db, "SELECT emit_event($1::uuid, $2, $3, $4, $5, $6::jsonb)", 6, p);
}

mb_err mb_event_data(mb_db *db, const char *partner_id, const char *type, const char *subject_type,
                     const char *subject_id, const char *request_id, const char *data_json)
{
    const char *p[] = {partner_id, type, subject_type, subject_id, request_id, data_json};
    return mb_db_defer(db, "SELECT emit_event_data($1::uuid, $2, $3, $4, $5, $6::jsonb)", 6, p);
}
