/* lua_host: the one lua_State, the protected-call helper, plugin slots with
 * their ordered inboxes, coroutine tasks with an instruction budget, and the
 * general waiting mechanism (timers, bus requests, and later db/http) that
 * lets plugin code look synchronous. Uses bus, event, log, libuv, Lua.
 *
 * Files (each calls only those after it; nothing calls back up except
 * through the hooks api.c registers):
 *   api.c           the `daz` module, event objects, timers; the `core` table
 *   db_binding.c    daz.db (uses the postgres writer and pool)
 *   http_binding.c  the `http` global (uses src/http: libcurl on the loop)
 *   rooms_binding.c the rooms' commands for Lua
 *   manager.c       start/stop/reload/status through lua/core/plugins.lua,
 *                   and the core functions it drives plugin slots with
 *   host.c          the lua_State, refs, pcall, tasks, waits, inboxes,
 *                   subscriptions, plugin slots (data in host_private.h)
 *   watchdog.c      the budget timer thread */
#ifndef DAZ_LUA_HOST_H
#define DAZ_LUA_HOST_H

#include <lua.h>
#include <stdint.h>
#include <uv.h>

#include "core/bus.h"

struct host;
struct plugin;
struct task;
struct host_wait;

struct host_options {
    long instruction_budget;   /* instructions a handler run may take once it ... */
    long budget_after_us;      /* ... has run this long (0: 1000 µs); then it is aborted */
    int degraded_after_errors; /* errors within a minute that mark a plugin degraded */
    size_t inbox_size;         /* queued deliveries per plugin before drops */
};

enum plugin_state {
    PLUGIN_LOADED = 0,
    PLUGIN_INITIALIZED,
    PLUGIN_STARTED,
    PLUGIN_STOPPED,
    PLUGIN_FAILED,
};

/* Handler run time histogram bounds, seconds (daz_plugin_handler_seconds). */
#define HOST_HIST_BUCKETS 12
extern const double host_hist_bounds[HOST_HIST_BUCKETS];

/* What a plugin did, for /health and /metrics. */
struct plugin_stats {
    const char *name;
    enum plugin_state state;
    int degraded;
    uint64_t handled, errors, dropped;
    double handler_seconds;
    const char *last_error; /* owned by the host; valid until the next call */
    size_t inbox_depth;
    const unsigned long long *hist; /* HOST_HIST_BUCKETS + 1 counts */
};

struct host *host_new(uv_loop_t *loop, struct bus *bus, lua_State *L, const struct host_options *opts);

/* Loads every plugin from the config (registry ref `config_ref`), orders them
 * by dependency, inits and starts them. Returns 0, or -1 after logging why. */
int host_start_plugins(struct host *h, int config_ref);

/* Reloads one plugin by name, or every plugin whose file changed (NULL).
 * Runs on the next loop turn; never inside a handler. */
void host_request_reload(struct host *h, const char *name);

/* Stops plugins in reverse order and cancels everything they registered. */
void host_stop_plugins(struct host *h);

/* Releases what is left; the loop must then run until handles close. */
void host_close(struct host *h);
void host_free(struct host *h);

/* Registry refs the host made and has not released (0 after shutdown). */
long host_refs_outstanding(const struct host *h);

typedef void (*host_stats_fn)(const struct plugin_stats *stats, void *ctx);
void host_foreach_plugin(struct host *h, host_stats_fn fn, void *ctx);

/* Every plugin's status as JSON text, with the fields its status() returns
 * (malloc'd; NULL if the manager is not running or on error). */
char *host_status_json(struct host *h);

/* ---- for lua_api.c and later C modules (db, http) ---- */

struct host *host_from_lua(lua_State *L);
lua_State *host_lua(struct host *h);
struct bus *host_bus(struct host *h);
uv_loop_t *host_loop(struct host *h);

/* Registry refs, counted so leaks show up. */
int host_ref(struct host *h, lua_State *L);      /* pops the value */
void host_unref(struct host *h, int ref);

/* Calls the function below `nargs` arguments on L's stack in protected mode
 * with a traceback handler. On error logs "<what>: <error + traceback>",
 * counts it against `p` (may be NULL), and returns non-zero with the stack
 * restored (function and args popped). */
int host_pcall(struct host *h, struct plugin *p, const char *what, int nargs, int nresults);

const char *plugin_name(const struct plugin *p);

/* Waiting. A Lua C function running inside a task does:
 *     struct host_wait *w = host_wait_begin(L, cancel, ctx);
 *     if (!w) return luaL_error(L, "cannot wait here ...");
 *     ... start the I/O, keeping w ...
 *     return host_wait_yield(L);
 * and the I/O's completion calls host_wait_complete(w, push, arg): `push`
 * pushes the values the Lua call returns (on the task's stack) and returns
 * how many. If the plugin stops first, `cancel(ctx)` is called instead and
 * the completion must not be called afterwards. */
typedef void (*host_cancel_fn)(void *ctx);
typedef int (*host_push_fn)(lua_State *co, void *arg);
struct host_wait *host_wait_begin(lua_State *L, host_cancel_fn cancel, void *ctx);
int host_wait_yield(lua_State *L);
/* Undo host_wait_begin when the C function decides not to wait after all. */
void host_wait_abandon(struct host_wait *w);
void host_wait_complete(struct host_wait *w, host_push_fn push, void *arg);

/* Subscriptions: `fn_ref` (a registry ref the subscription then owns) runs
 * for each matching event in plugin p, in order with its other work — or,
 * when `concurrent`, at once in a task of its own. */
struct lua_sub *host_subscribe(struct plugin *p, const char *pattern, const char *const *tags,
                               int tag_count, int priority, int fn_ref, int concurrent);
void host_unsubscribe(struct lua_sub *s);
/* `handle` (in a Lua userdata) is set to NULL when the subscription ends;
 * the userdata's __gc passes NULL here to detach. */
void host_sub_set_handle(struct lua_sub *s, struct lua_sub **handle);

/* The private functions lua/core/plugins.lua uses, set into the table on top
 * (manager.c). */
void host_push_core_functions(lua_State *L);


/* Runs `fn_ref` (borrowed) with no event, in order with the plugin's work. */
void host_call_later(struct plugin *p, int fn_ref);

/* What the API layer (api.c) lends the host, registered by lua_api_open so
 * that the host never calls the API directly: push_event pushes the Lua view
 * of `ev` (a table shared by every Lua subscriber: type, room, data, tags,
 * priority, replayed, id); push_core pushes the private `core` table the
 * plugin manager gets. */
struct host_api_hooks {
    void (*push_event)(struct host *h, lua_State *L, struct event *ev);
    void (*push_core)(lua_State *L);
};
void host_set_api_hooks(struct host *h, const struct host_api_hooks *hooks);

/* Plugin slots, used by the plugin manager (lua/core/plugins.lua). */
struct plugin *host_plugin_new(struct host *h, const char *name);
void host_plugin_set_state(struct plugin *p, enum plugin_state state);
/* Cancels every subscription, timer, task and wait of the plugin. */
void host_plugin_cancel_all(struct plugin *p);
/* Hold: deliveries queue in the inbox but do not run (used during reload). */
void host_plugin_hold(struct plugin *p, int hold);
void host_plugin_record_error(struct plugin *p, const char *msg);

/* Resources a plugin owns, so that stop cancels them: */
struct plugin_resource {
    struct plugin_resource *prev, *next;
    void (*cancel)(struct plugin_resource *r); /* must unlink and free (maybe later) */
};
void host_plugin_own(struct plugin *p, struct plugin_resource *r);
void host_plugin_disown(struct plugin_resource *r);

#endif
