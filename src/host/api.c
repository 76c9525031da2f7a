/* lua_api: what Lua sees — the `daz` module (sleep, clocks, log, json), each
 * plugin's bus handle (publish, subscribe, request, after, every), event
 * objects (respond, reply), and the JSON hooks that let events carry either
 * JSON text or a Lua table. Uses lua_host, bus, event, log, lua-cjson. */
#include "host/api.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/event_json.h"
#include "core/log.h"
#include "core/version.h"

#define BUS_HANDLE_MT "daz.bus"
#define SUB_HANDLE_MT "daz.subscription"
#define TIMER_HANDLE_MT "daz.timer"
#define MAX_TAGS 16

static struct host *the_host; /* one per process; the event hooks need it */
static int json_encode_ref = LUA_NOREF, json_decode_ref = LUA_NOREF;
static int event_mt_ref = LUA_NOREF;
static int empty_tags_ref = LUA_NOREF; /* read-only empty list for untagged events */
static double start_time;

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ event hooks */

static void event_release_lua(struct event *ev)
{
    if (!the_host)
        return;
    host_unref(the_host, ev->lua_event_ref);
    host_unref(the_host, ev->lua_data_ref);
    ev->lua_event_ref = ev->lua_data_ref = LUA_NOREF;
}

/* JSON text of the Lua payload, for C consumers. */
static int event_encode_lua(struct event *ev)
{
    if (!the_host || ev->lua_data_ref == LUA_NOREF)
        return -1;
    lua_State *L = host_lua(the_host);
    lua_rawgeti(L, LUA_REGISTRYINDEX, json_encode_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ev->lua_data_ref);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        log_warn("bus", "%s: payload cannot be encoded as JSON: %s", ev->type, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len + 1);
        ev->json = copy;
        ev->json_len = len;
    }
    lua_pop(L, 1);
    return copy ? 0 : -1;
}

/* Pushes the payload as a Lua value, decoding the JSON once per event. */
static void push_event_data(lua_State *L, struct event *ev)
{
    if (ev->lua_data_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ev->lua_data_ref);
        return;
    }
    json_t *native = event_json_value(ev);
    if (native) {
        if (event_json_push_lua(L, native) != 0) {
            log_warn("bus", "%s: payload nested too deeply for Lua", ev->type);
            lua_pushnil(L);
            return;
        }
        lua_pushvalue(L, -1);
        ev->lua_data_ref = host_ref(the_host, L);
        return;
    }
    if (!ev->json) {
        lua_pushnil(L);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, json_decode_ref);
    lua_pushlstring(L, ev->json, ev->json_len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        log_warn("bus", "%s: payload is not valid JSON: %s", ev->type, lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushnil(L);
        return;
    }
    lua_pushvalue(L, -1);
    ev->lua_data_ref = host_ref(the_host, L);
}

static void push_event(struct host *h, lua_State *L, struct event *ev)
{
    if (ev->lua_event_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ev->lua_event_ref);
        return;
    }
    lua_createtable(L, 0, 8);
    lua_pushstring(L, ev->type);
    lua_setfield(L, -2, "type");
    if (ev->room) {
        lua_pushstring(L, ev->room);
        lua_setfield(L, -2, "room");
    }
    lua_pushinteger(L, ev->priority);
    lua_setfield(L, -2, "priority");
    if (ev->correlation_id) {
        lua_pushinteger(L, (lua_Integer)ev->correlation_id);
        lua_setfield(L, -2, "id");
    }
    /* Shared empty list for the (common) untagged event: one table less. */
    if (ev->tag_count > 0) {
        lua_createtable(L, ev->tag_count, 0);
        for (int i = 0; i < ev->tag_count; i++) {
            lua_pushstring(L, ev->tags[i]);
            lua_rawseti(L, -2, i + 1);
        }
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, empty_tags_ref);
    }
    lua_setfield(L, -2, "tags");
    if (event_has_tag(ev, "replayed")) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "replayed");
    }
    push_event_data(L, ev);
    lua_setfield(L, -2, "data");
    lua_rawgeti(L, LUA_REGISTRYINDEX, event_mt_ref);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    ev->lua_event_ref = host_ref(h, L);
}

/* ----------------------------------------------------------- arguments */

static struct plugin *check_plugin(lua_State *L)
{
    struct plugin **pp = luaL_checkudata(L, 1, BUS_HANDLE_MT);
    if (!*pp)
        luaL_error(L, "this bus handle belongs to a plugin that was unloaded");
    return *pp;
}

static lua_Integer opt_int_field(lua_State *L, int opts, const char *key, lua_Integer def)
{
    if (lua_isnoneornil(L, opts))
        return def;
    lua_getfield(L, opts, key);
    lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

static int opt_bool_field(lua_State *L, int opts, const char *key)
{
    if (lua_isnoneornil(L, opts))
        return 0;
    lua_getfield(L, opts, key);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* opts.tags as a C array of borrowed strings (valid while opts is on the stack). */
static int opt_tags(lua_State *L, int opts, const char **tags)
{
    if (lua_isnoneornil(L, opts))
        return 0;
    lua_getfield(L, opts, "tags");
    int n = 0;
    if (lua_istable(L, -1)) {
        lua_Integer len = luaL_len(L, -1);
        if (len > MAX_TAGS)
            luaL_error(L, "at most %d tags", MAX_TAGS);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_rawgeti(L, -1, i);
            tags[n++] = luaL_checkstring(L, -1);
            lua_pop(L, 1); /* the table keeps the string alive */
        }
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "opts.tags must be a list of strings");
    }
    lua_pop(L, 1);
    return n;
}

/* A new event from (type, data, opts) at stack positions 2, 3, 4. */
static struct event *event_from_lua(lua_State *L, struct host *h)
{
    const char *type = luaL_checkstring(L, 2);
    int opts = 4;
    if (!lua_isnoneornil(L, opts))
        luaL_checktype(L, opts, LUA_TTABLE);
    lua_Integer prio = opt_int_field(L, opts, "priority", 0);
    luaL_argcheck(L, prio >= 0 && prio <= 3, opts, "priority must be 0..3");
    const char *room = NULL;
    if (!lua_isnoneornil(L, opts)) {
        lua_getfield(L, opts, "room");
        room = lua_tostring(L, -1);
        lua_pop(L, 1); /* opts keeps it alive */
    }
    const char *tags[MAX_TAGS];
    int ntags = opt_tags(L, opts, tags);
    struct event *ev = event_new(type, room, (int)prio, NULL, 0);
    if (!ev)
        luaL_error(L, "out of memory");
    for (int i = 0; i < ntags; i++) {
        if (!event_has_tag(ev, tags[i]) && event_add_tag(ev, tags[i]) != 0) {
            event_unref(ev);
            luaL_error(L, "out of memory");
        }
    }
    if (!lua_isnoneornil(L, 3)) {
        lua_pushvalue(L, 3);
        ev->lua_data_ref = host_ref(h, L);
    }
    return ev;
}

/* ------------------------------------------------------------ bus handle */

static int bus_publish_l(lua_State *L)
{
    struct plugin *p = check_plugin(L);
    struct host *h = host_from_lua(L);
    (void)p;
    struct event *ev = event_from_lua(L, h);
    lua_pushboolean(L, bus_publish(host_bus(h), ev) == 0);
    return 1;
}

static int sub_cancel_l(lua_State *L)
{
    struct lua_sub **box = luaL_checkudata(L, 1, SUB_HANDLE_MT);
    if (*box)
        host_unsubscribe(*box); /* nulls *box */
    return 0;
}

static int sub_gc_l(lua_State *L)
{
    struct lua_sub **box = luaL_checkudata(L, 1, SUB_HANDLE_MT);
    if (*box)
        host_sub_set_handle(*box, NULL); /* the subscription lives on */
    return 0;
}

static int bus_subscribe_l(lua_State *L)
{
    struct plugin *p = check_plugin(L);
    struct host *h = host_from_lua(L);
    const char *pattern = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    int opts = 4;
    if (!lua_isnoneornil(L, opts))
        luaL_checktype(L, opts, LUA_TTABLE);
    lua_Integer prio = opt_int_field(L, opts, "priority", 0);
    int concurrent = opt_bool_field(L, opts, "concurrent");
    const char *tags[MAX_TAGS];
    int ntags = opt_tags(L, opts, tags);

    struct lua_sub **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, SUB_HANDLE_MT);
    lua_pushvalue(L, 3);
    int fn_ref = host_ref(h, L);
    struct lua_sub *s = host_subscribe(p, pattern, tags, ntags, (int)prio, fn_ref, concurrent);
    if (!s) {
        host_unref(h, fn_ref);
        return luaL_error(L, "out of memory");
    }
    *box = s;
    host_sub_set_handle(s, box);
    return 1;
}

/* ------------------------------------------------------------ requests */

struct request_wait {
    struct host_wait *w;
    struct bus *bus;
    uint64_t id;
};

static void request_cancel(void *ctx)
{
    struct request_wait *rw = ctx;
    bus_cancel_request(rw->bus, rw->id);
    free(rw);
}

struct response_args {
    struct event *resp;
    const char *error;
};

static int push_response(lua_State *co, void *arg)
{
    struct response_args *a = arg;
    if (a->error || (a->resp && a->resp->error)) {
        lua_pushnil(co);
        lua_pushstring(co, a->error ? a->error : a->resp->error);
        return 2;
    }
    push_event_data(co, a->resp);
    return 1;
}

static void on_response(struct event *resp, const char *error, void *ctx)
{
    struct request_wait *rw = ctx;
    struct response_args a = {resp, error};
    struct host_wait *w = rw->w;
    free(rw);
    host_wait_complete(w, push_response, &a);
}

static int bus_request_l(lua_State *L)
{
    check_plugin(L);
    struct host *h = host_from_lua(L);
    lua_Integer timeout = opt_int_field(L, 4, "timeout", 5000);
    luaL_argcheck(L, timeout > 0, 4, "timeout must be positive (ms)");
    struct event *ev = event_from_lua(L, h); /* may raise: nothing to undo yet */
    struct request_wait *rw = calloc(1, sizeof *rw);
    struct host_wait *w = rw ? host_wait_begin(L, request_cancel, rw) : NULL;
    if (!w) {
        free(rw);
        event_unref(ev);
        return luaL_error(L, "bus:request can only wait inside a handler or timer (not in init/start/stop)");
    }
    const char *error = NULL;
    rw->w = w;
    rw->bus = host_bus(h);
    rw->id = bus_request(host_bus(h), ev, (uint64_t)timeout, on_response, rw, &error);
    if (rw->id == 0) {
        struct response_args a = {NULL, error ? error : "request failed"};
        /* Not waiting after all: undo the wait and answer at once. */
        host_wait_abandon(w);
        free(rw);
        return push_response(L, &a);
    }
    return host_wait_yield(L);
}

/* ------------------------------------------------------------ timers */

struct lua_timer {
    struct plugin_resource res;
    uv_timer_t timer;
    struct plugin *p;
    int fn_ref;
    int repeat;
    struct lua_timer **box;
};

static void timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void timer_cancel(struct plugin_resource *r)
{
    struct lua_timer *t = (struct lua_timer *)r;
    host_plugin_disown(r);
    if (t->box)
        *t->box = NULL;
    t->box = NULL;
    host_unref(the_host, t->fn_ref);
    t->fn_ref = LUA_NOREF;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, timer_closed);
}

static void on_timer(uv_timer_t *handle)
{
    struct lua_timer *t = handle->data;
    int fn_ref = t->fn_ref;
    struct plugin *p = t->p;
    if (!t->repeat) {
        /* One-shot: the call keeps its own reference to the function. */
        host_call_later(p, fn_ref);
        if (t->fn_ref != LUA_NOREF)
            timer_cancel(&t->res);
        return;
    }
    host_call_later(p, fn_ref);
}

static int timer_cancel_l(lua_State *L)
{
    struct lua_timer **box = luaL_checkudata(L, 1, TIMER_HANDLE_MT);
    if (*box)
        timer_cancel(&(*box)->res);
    return 0;
}

static int timer_gc_l(lua_State *L)
{
    struct lua_timer **box = luaL_checkudata(L, 1, TIMER_HANDLE_MT);
    if (*box)
        (*box)->box = NULL; /* the timer keeps running */
    return 0;
}

static int start_timer(lua_State *L, int repeat)
{
    struct plugin *p = check_plugin(L);
    struct host *h = host_from_lua(L);
    lua_Integer ms = luaL_checkinteger(L, 2);
    luaL_argcheck(L, ms >= 0 && (!repeat || ms > 0), 2, repeat ? "interval must be > 0 ms" : "delay must be >= 0 ms");
    luaL_checktype(L, 3, LUA_TFUNCTION);
    struct lua_timer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, TIMER_HANDLE_MT);
    struct lua_timer *t = calloc(1, sizeof *t);
    if (!t)
        return luaL_error(L, "out of memory");
    if (uv_timer_init(host_loop(h), &t->timer) != 0) {
        free(t);
        return luaL_error(L, "cannot create a timer");
    }
    t->timer.data = t;
    t->p = p;
    t->repeat = repeat;
    t->res.cancel = timer_cancel;
    lua_pushvalue(L, 3);
    t->fn_ref = host_ref(h, L);
    t->box = box;
    *box = t;
    host_plugin_own(p, &t->res);
    uv_timer_start(&t->timer, on_timer, (uint64_t)ms, repeat ? (uint64_t)ms : 0);
    return 1;
}

static int bus_after_l(lua_State *L) { return start_timer(L, 0); }
static int bus_every_l(lua_State *L) { return start_timer(L, 1); }

/* ------------------------------------------------------------ sleep */

struct sleep_wait {
    uv_timer_t timer;
    struct host_wait *w;
};

static void sleep_cancel(void *ctx)
{
    struct sleep_wait *s = ctx;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, timer_closed);
}

static void on_sleep_done(uv_timer_t *handle)
{
    struct sleep_wait *s = handle->data;
    struct host_wait *w = s->w;
    uv_close((uv_handle_t *)&s->timer, timer_closed);
    host_wait_complete(w, NULL, NULL);
}

static int daz_sleep_l(lua_State *L)
{
    struct host *h = host_from_lua(L);
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_argcheck(L, ms >= 0, 1, "must be >= 0 ms");
    struct sleep_wait *s = calloc(1, sizeof *s);
    if (!s)
        return luaL_error(L, "out of memory");
    struct host_wait *w = host_wait_begin(L, sleep_cancel, s);
    if (!w) {
        free(s);
        return luaL_error(L, "daz.sleep can only wait inside a handler or timer (not in init/start/stop)");
    }
    s->w = w;
    if (uv_timer_init(host_loop(h), &s->timer) != 0) {
        host_wait_abandon(w);
        free(s);
        return luaL_error(L, "cannot create a timer");
    }
    s->timer.data = s;
    /* At least 1 ms: a 0 ms timer started from a timer callback fires again
     * in the same loop pass, so a daz.sleep(0) loop would starve the bus. */
    uv_timer_start(&s->timer, on_sleep_done, ms > 0 ? (uint64_t)ms : 1, 0);
    return host_wait_yield(L);
}

/* ------------------------------------------------------------ events */

/* ev:respond(value) or ev:respond(nil, "error"): answers a request. */
static int event_respond_l(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct host *h = host_from_lua(L);
    lua_getfield(L, 1, "id");
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (id == 0)
        return luaL_error(L, "ev:respond: this event is not a request");
    lua_getfield(L, 1, "type");
    struct event *resp = event_new(lua_tostring(L, -1), NULL, 0, NULL, 0);
    lua_pop(L, 1);
    if (!resp)
        return luaL_error(L, "out of memory");
    if (!lua_isnoneornil(L, 3)) {
        event_set_error(resp, luaL_tolstring(L, 3, NULL));
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 2)) {
        lua_pushvalue(L, 2);
        resp->lua_data_ref = host_ref(h, L);
    }
    lua_pushboolean(L, bus_respond(host_bus(h), (uint64_t)id, resp) == 0);
    return 1;
}

/* ev:reply(text): answer a command the way it came — in the channel, or by
 * PM when ev.data.pm is true (to ev.data.user). */
static int event_reply_l(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *text = luaL_checkstring(L, 2);
    struct host *h = host_from_lua(L);
    lua_getfield(L, 1, "room");
    const char *room = lua_tostring(L, -1);
    lua_getfield(L, 1, "data");
    int pm = 0;
    const char *to = NULL;
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "pm");
        pm = lua_toboolean(L, -1);
        lua_getfield(L, -2, "user");
        to = lua_tostring(L, -1);
    }
    if (!room)
        return luaL_error(L, "ev:reply: the event has no room");
    if (pm && !to)
        return luaL_error(L, "ev:reply: a PM command without data.user");
    struct event *out = event_new(pm ? "cytube.send.pm" : "cytube.send", room, EVENT_PRIO_HIGH, NULL, 0);
    if (!out)
        return luaL_error(L, "out of memory");
    lua_createtable(L, 0, 3);
    lua_pushstring(L, room);
    lua_setfield(L, -2, "room");
    lua_pushstring(L, text);
    lua_setfield(L, -2, "msg");
    if (pm) {
        lua_pushstring(L, to);
        lua_setfield(L, -2, "to");
    }
    out->lua_data_ref = host_ref(h, L);
    lua_pushboolean(L, bus_publish(host_bus(h), out) == 0);
    return 1;
}

/* ------------------------------------------------------------ daz module */

static int daz_uptime_l(lua_State *L)
{
    lua_pushnumber(L, monotonic() - start_time);
    return 1;
}

static int daz_now_l(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

/* core.log(level, component, message) */
static int core_log_l(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *component = luaL_checkstring(L, 2);
    const char *msg = luaL_checkstring(L, 3);
    log_msg((enum log_level)level, component, "%s", msg);
    return 0;
}

static int core_log_enabled_l(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    lua_pushboolean(L, luaL_checkoption(L, 1, NULL, levels) >= (int)log_get_level());
    return 1;
}

/* core.listdir(path) -> sorted list of names ending in ".lua", or nil, err */
static int core_listdir_l(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: cannot open directory", path);
        return 2;
    }
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0) {
            lua_pushstring(L, e->d_name);
            lua_rawseti(L, -2, ++n);
        }
    }
    closedir(d);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

/* core.mtime(path) -> seconds (with ns) or nil */
static int core_mtime_l(lua_State *L)
{
    struct stat st;
    if (stat(luaL_checkstring(L, 1), &st) != 0)
        return 0;
    lua_pushnumber(L, (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9);
    return 1;
}

/* core.bus_handle(plugin) -> a new bus handle for the plugin slot */
static int core_bus_handle_l(lua_State *L)
{
    struct plugin *p = lua_touserdata(L, 1);
    struct plugin **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = p;
    luaL_setmetatable(L, BUS_HANDLE_MT);
    return 1;
}

/* core.bus_handle_revoke(handle): a stopped plugin's handle stops working. */
static int core_bus_handle_revoke_l(lua_State *L)
{
    struct plugin **box = luaL_checkudata(L, 1, BUS_HANDLE_MT);
    *box = NULL;
    return 0;
}

/* core.bus_stats() -> { [type] = {published, delivered, dropped, depth, capacity} } */
static void stats_into_table(const struct bus_type_stats *s, void *ctx)
{
    lua_State *L = ctx;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)s->published);
    lua_setfield(L, -2, "published");
    lua_pushinteger(L, (lua_Integer)s->delivered);
    lua_setfield(L, -2, "delivered");
    lua_pushinteger(L, (lua_Integer)s->dropped);
    lua_setfield(L, -2, "dropped");
    lua_pushinteger(L, (lua_Integer)s->depth);
    lua_setfield(L, -2, "depth");
    lua_pushinteger(L, (lua_Integer)s->capacity);
    lua_setfield(L, -2, "capacity");
    lua_setfield(L, -2, s->type);
}

static int core_bus_stats_l(lua_State *L)
{
    lua_newtable(L);
    bus_foreach_type(host_bus(host_from_lua(L)), stats_into_table, L);
    return 1;
}

/* core.reload(name or nil): schedule a reload on the next loop turn. */
static int core_reload_l(lua_State *L)
{
    host_request_reload(host_from_lua(L), luaL_optstring(L, 1, NULL));
    return 0;
}

/* core.bench_pcall(fn, arg, n) -> seconds for n plain lua_pcall(fn, arg):
 * the baseline the bus benchmark compares Lua delivery with. */
static int core_bench_pcall_l(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_Integer n = luaL_checkinteger(L, 3);
    double t0 = monotonic();
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 2);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK)
            lua_pop(L, 1);
    }
    lua_pushnumber(L, monotonic() - t0);
    return 1;
}

static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "ev.tags of an untagged event is read-only");
}

static void set_metatable(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

int lua_api_open(lua_State *L, struct host *h)
{
    the_host = h;
    start_time = monotonic();
    static const struct host_api_hooks api_hooks = {push_event, lua_api_push_core};
    host_set_api_hooks(h, &api_hooks);

    static const luaL_Reg bus_methods[] = {
        {"publish", bus_publish_l}, {"subscribe", bus_subscribe_l}, {"request", bus_request_l},
        {"after", bus_after_l},     {"every", bus_every_l},         {NULL, NULL},
    };
    static const luaL_Reg sub_methods[] = {{"cancel", sub_cancel_l}, {NULL, NULL}};
    static const luaL_Reg timer_methods[] = {{"cancel", timer_cancel_l}, {NULL, NULL}};
    set_metatable(L, BUS_HANDLE_MT, bus_methods, NULL);
    set_metatable(L, SUB_HANDLE_MT, sub_methods, sub_gc_l);
    set_metatable(L, TIMER_HANDLE_MT, timer_methods, timer_gc_l);

    /* Event objects: plain tables sharing one metatable. */
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, event_respond_l);
    lua_setfield(L, -2, "respond");
    lua_pushcfunction(L, event_reply_l);
    lua_setfield(L, -2, "reply");
    lua_setfield(L, -2, "__index");
    event_mt_ref = host_ref(h, L);
    lua_newtable(L);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    empty_tags_ref = host_ref(h, L);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        log_error("host", "lua-cjson is required: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, -1, "encode");
    json_encode_ref = host_ref(h, L);
    lua_getfield(L, -1, "decode");
    json_decode_ref = host_ref(h, L);
    lua_pop(L, 1);

    static const struct event_lua_hooks hooks = {event_release_lua, event_encode_lua};
    event_set_lua_hooks(&hooks);

    /* The public `daz` module; plugins see it as a global. */
    static const luaL_Reg daz_fns[] = {
        {"sleep", daz_sleep_l}, {"uptime", daz_uptime_l}, {"now", daz_now_l}, {NULL, NULL},
    };
    luaL_newlib(L, daz_fns);
    lua_pushliteral(L, DAZ_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushliteral(L, DAZ_BUILD);
    lua_setfield(L, -2, "build");
    lua_setglobal(L, "daz");
    return 0;
}

void lua_api_push_core(lua_State *L)
{
    static const luaL_Reg core_fns[] = {
        {"log", core_log_l},
        {"log_enabled", core_log_enabled_l},
        {"listdir", core_listdir_l},
        {"mtime", core_mtime_l},
        {"bus_handle", core_bus_handle_l},
        {"bus_handle_revoke", core_bus_handle_revoke_l},
        {"bus_stats", core_bus_stats_l},
        {"reload", core_reload_l},
        {"bench_pcall", core_bench_pcall_l},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, core_fns, 0);
    host_push_core_functions(L);
}

void lua_api_close(struct host *h)
{
    event_set_lua_hooks(NULL);
    host_unref(h, json_encode_ref);
    host_unref(h, json_decode_ref);
    host_unref(h, event_mt_ref);
    host_unref(h, empty_tags_ref);
    json_encode_ref = json_decode_ref = event_mt_ref = empty_tags_ref = LUA_NOREF;
    the_host = NULL;
}
