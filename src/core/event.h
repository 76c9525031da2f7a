/* event: the value that travels on the bus — type, room, priority, tags,
 * correlation id, and a payload held as JSON text, as the core's parsed
 * JSON value (`native`, a jansson json_t) and/or as a Lua table (each made
 * from another at most once, on demand). Reference counted. Uses only libc;
 * the Lua host installs hooks for the Lua side and event_json.c those for
 * the native value. */
#ifndef DAZ_EVENT_H
#define DAZ_EVENT_H

#include <stddef.h>
#include <stdint.h>

enum event_priority {
    EVENT_PRIO_NORMAL = 0,
    EVENT_PRIO_HIGH = 1,
    EVENT_PRIO_URGENT = 2,
    EVENT_PRIO_CRITICAL = 3,
};
#define EVENT_PRIO_COUNT 4

#define EVENT_NO_REF (-2) /* LUA_NOREF */

struct bus_type;

struct event {
    int refcount;
    int priority;               /* enum event_priority */
    char *type;                 /* owned */
    char *room;                 /* owned, may be NULL */
    char **tags;                /* the tags: inline_tags or an owned array; strings owned */
    int tag_count;
    char *room_tag;             /* "room:<room>", in the event's own allocation */
    char *inline_tags[4];       /* the first tags: no allocation for the usual few */
    uint64_t correlation_id;    /* non-zero on requests and their responses */
    uint64_t seq;               /* set by bus_publish: publish order */
    char *json;                 /* owned payload text, may be NULL until encoded */
    size_t json_len;
    void *native;               /* owned parsed payload (json_t *), may be NULL */
    int lua_data_ref;           /* registry ref of the decoded payload table */
    int lua_event_ref;          /* registry ref of the Lua event object */
    char *error;                /* owned; a response that carries an error */
    /* Bus-private: the link in its type's queue, the links in the bus-wide
     * FIFO of its priority, and the interned type record. */
    struct event *next;
    struct event *gprev, *gnext;
    struct bus_type *btype;
};

/* Hooks the Lua host installs: release drops the Lua refs of a dying event;
 * encode fills ev->json from ev->lua_data_ref (returns 0 on success). */
struct event_lua_hooks {
    void (*release)(struct event *ev);
    int (*encode)(struct event *ev);
};
void event_set_lua_hooks(const struct event_lua_hooks *hooks);

/* Hooks for the native payload: release drops it, encode returns its JSON
 * text (malloc'd, NUL-terminated) or NULL. Installed by event_json.c. */
struct event_native_hooks {
    void (*release)(void *native);
    char *(*encode)(void *native, size_t *len);
};
void event_set_native_hooks(const struct event_native_hooks *hooks);

/* New event with refcount 1. `json` (may be NULL: no payload) is copied.
 * Returns NULL when out of memory or when type is NULL/empty. */
struct event *event_new(const char *type, const char *room, int priority,
                        const char *json, size_t json_len);
/* Like event_new but takes ownership of a malloc'd `json`. */
struct event *event_new_take(const char *type, const char *room, int priority,
                             char *json, size_t json_len);

int event_add_tag(struct event *ev, const char *tag); /* 0, or -1 out of memory */
int event_has_tag(const struct event *ev, const char *tag);
/* Adds "room:<room>" when the event has a room (done by event_new). */

struct event *event_ref(struct event *ev);
void event_unref(struct event *ev);

/* The payload as JSON text ("null" when there is none). May encode from the
 * native value or the Lua table on first use; returns NULL only if that
 * encoding fails. */
const char *event_json(struct event *ev, size_t *len);

int event_set_error(struct event *ev, const char *error);

#endif
