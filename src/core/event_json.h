/* event_json: events whose payload is the core's parsed JSON (a jansson
 * value). A chat line arrives parsed from its Socket.IO frame; carrying that
 * value on the event, instead of its re-encoded text, means C consumers (the
 * batch writer's logger rules) read it without parsing again and Lua gets
 * its table built straight from it. Text is made only if someone asks
 * (event_json), e.g. to spool or to answer a request. */
#ifndef DAZ_EVENT_JSON_H
#define DAZ_EVENT_JSON_H

#include <jansson.h>
#include <lua.h>

#include "core/event.h"

/* New event (refcount 1) holding a reference to `data` (may be NULL: no
 * payload). The caller must not change `data` afterwards: it is shared.
 * Returns NULL when out of memory or when type is NULL/empty. */
struct event *event_new_json(const char *type, const char *room, int priority, json_t *data);

/* The event's parsed payload (borrowed), or NULL when it has none or only
 * text / a Lua table. */
json_t *event_json_value(const struct event *ev);

/* Pushes `v` as the Lua value lua-cjson's decode would give: objects and
 * arrays as tables, every number as a float, null as cjson.null (a NULL
 * light userdata). Returns 0, or -1 (nothing pushed) when nested deeper
 * than cjson allows (1000). */
int event_json_push_lua(lua_State *L, const json_t *v);

#endif
