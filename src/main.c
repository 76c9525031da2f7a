/* main: flags, the startup sequence (DESIGN §9), signals and orderly shutdown.
 * Uses config, log, and libuv for the loop. */
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/bus.h"
#include "core/config.h"
#include "cytube/rooms.h"
#include "cytube/metrics.h"
#include "core/bus_metrics.h"
#include "host/plugin_metrics.h"
#include "core/embedded.h"
#include "health/server.h"
#include "core/log.h"
#include "host/api.h"
#include "host/host.h"
#include "host/rooms_binding.h"
#include "host/db_binding.h"
#include "host/http_binding.h"
#include "http/metrics.h"
#include "cytube/backoff_store.h"
#include "postgres/sql_plugin.h"
#include "postgres/metrics.h"
#include "core/version.h"

#define MAX_OVERRIDES 128

struct options {
    const char *config_path;
    const char *health_port;
    int verbose;
    int check_config;
    int reset_backoff;           /* -reset-backoff: clear the saved backoff, exit */
    const char *reset_channel;   /* its channel; NULL: every room */
};

struct app {
    uv_loop_t *loop;
    lua_State *L;
    struct daz_config cfg;
    struct bus *bus;
    struct host *host;
    struct cytube *rooms; /* the CyTube rooms (cytube.c) */
    struct health *health;
    struct metrics *metrics;
    struct sql *sql;      /* the SQL plugin: pool, migrations, log writer (sql.c) */
    int sql_ready;        /* migrations applied, writer running */
    struct room_backoff *backoff; /* the rooms' reconnect backoff, kept in the database */
    struct sql_health sql_health;
    int failed;           /* startup failed: exit 1 */
    int config_error;     /* ... because of the config (a plugin's settings): exit 2 */
    uv_signal_t sigint, sigterm, sighup;
    int signals_started;
    int stopping;
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: daz [flags]\n"
            "  -config FILE       configuration file (default config.lua)\n"
            "  -health-port N     health/metrics port (0 turns the server off)\n"
            "  -verbose           log at debug level\n"
            "  -check-config      validate the configuration, print problems, exit 0 or 2\n"
            "  -reset-backoff [CHANNEL]\n"
            "                     clear the reconnect backoff saved in the database for\n"
            "                     CHANNEL (default: every room), then exit\n"
            "  -version           print the version and exit\n"
            "  -help              print this help and exit\n"
            "Settings can also be forced with DAZ_<SECTION>__<KEY>=value, e.g. DAZ_HEALTH__PORT=9090.\n");
}

/* Go-style flags: -name value, -name=value, and --name too. Returns 0, or 2 on
 * a usage error, or 1 when the program should exit 0 at once (-help/-version). */
static int parse_flags(int argc, char **argv, struct options *o)
{
    o->config_path = "config.lua";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            fprintf(stderr, "daz: unexpected argument %s\n", a);
            return 2;
        }
        a += a[1] == '-' ? 2 : 1;
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) {
            fprintf(stderr, "daz: unknown flag %s\n", argv[i]);
            return 2;
        }
        memcpy(name, a, len);
        name[len] = '\0';
        if (eq)
            value = eq + 1;

        int takes_value = strcmp(name, "config") == 0 || strcmp(name, "health-port") == 0;
        int optional_value = strcmp(name, "reset-backoff") == 0;
        if (optional_value) {
            /* handled below */
        } else if (takes_value && !value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "daz: flag -%s needs a value\n", name);
                return 2;
            }
            value = argv[++i];
        } else if (!takes_value && value) {
            fprintf(stderr, "daz: flag -%s takes no value\n", name);
            return 2;
        }

        if (strcmp(name, "config") == 0) {
            o->config_path = value;
        } else if (strcmp(name, "health-port") == 0) {
            o->health_port = value;
        } else if (strcmp(name, "verbose") == 0 || strcmp(name, "v") == 0) {
            o->verbose = 1;
        } else if (strcmp(name, "check-config") == 0) {
            o->check_config = 1;
        } else if (strcmp(name, "reset-backoff") == 0) {
            /* the channel is optional: -reset-backoff=NAME or a next argument that is no flag */
            o->reset_backoff = 1;
            o->reset_channel = value ? value : i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : NULL;
            if (o->reset_channel && !o->reset_channel[0]) {
                fprintf(stderr, "daz: -reset-backoff needs a channel name or none\n");
                return 2;
            }
        } else if (strcmp(name, "version") == 0) {
            printf("daz %s (build %s)\n", DAZ_VERSION, DAZ_BUILD);
            return 1;
        } else if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0) {
            usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "daz: unknown flag %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

static void on_close_noop(uv_handle_t *h) { (void)h; }

/* The last part of shutdown, once the database side has let go. */
static void app_finish_shutdown(void *ctx)
{
    struct app *app = ctx;
    if (app->bus)
        bus_close(app->bus);
    if (app->host) {
        host_close(app->host);
        lua_db_close(app->host);
        lua_http_close(app->host);
        lua_api_close(app->host);
    }
}

/* Shutdown in the reverse order of startup (DESIGN §9): stop taking signals,
 * stop plugins (reverse dependency order), deliver what is still queued,
 * close the bus and the host; the loop ends when their handles are closed. */
static void app_shutdown(struct app *app, const char *why)
{
    if (app->stopping)
        return;
    app->stopping = 1;
    log_info("main", "shutting down (%s)", why);
    if (app->signals_started) {
        uv_close((uv_handle_t *)&app->sighup, on_close_noop);
        uv_close((uv_handle_t *)&app->sigint, on_close_noop);
        uv_close((uv_handle_t *)&app->sigterm, on_close_noop);
    }
    if (app->metrics)
        metrics_close(app->metrics); /* /health says "down" from here on */
    if (app->rooms)
        cytube_close(app->rooms); /* rooms leave first ("41"), before plugins stop */
    if (app->host)
        host_stop_plugins(app->host);
    if (app->bus)
        bus_dispatch(app->bus, 0); /* nobody Lua listens now; C subscribers still do */
    /* The database after the plugins: the writer takes what is still
     * buffered (or spools it), then the pool closes; then the rest. */
    if (app->sql)
        sql_stop(app->sql, app_finish_shutdown, app);
    else
        app_finish_shutdown(app);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (signum == SIGHUP) {
        log_info("main", "SIGHUP: reloading changed plugins");
        host_request_reload(app->host, NULL);
        return;
    }
    app_shutdown(app, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static int start_signals(struct app *app)
{
    uv_signal_t *handles[] = {&app->sigint, &app->sigterm, &app->sighup};
    int signums[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(app->loop, handles[i]); /* cannot fail on Linux */
        handles[i]->data = app;
    }
    app->signals_started = 1;
    for (int i = 0; i < 3; i++) {
        int rc = uv_signal_start(handles[i], on_signal, signums[i]);
        if (rc != 0) {
            log_error("main", "cannot watch signal %d: %s", signums[i], uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static int set_capacity(const char *prefix, long size, void *ctx)
{
    return bus_set_capacity(ctx, prefix, (size_t)size);
}

/* lua/lib modules are found by require, relative to the working directory. */
static void set_lua_path(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "lua/lib/?.lua;lua/lib/?/init.lua;%s", lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

/* Finds and compiles the plugin files and checks each one's settings
 * against its schema (lua/core/plugins.lua check), running no plugin. Each
 * problem is one line: printed to stderr (-check-config) or logged. Returns
 * how many config problems there are: the settings', and with `all` also a
 * plugin that would not start (start reports that one itself); -1 when the
 * plugin manager itself fails. */
static int check_plugins(lua_State *L, int config_ref, int all, int to_stderr)
{
    int top = lua_gettop(L);
    int problems = 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "core.plugins");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        goto failed;
    lua_getfield(L, -1, "check");
    lua_api_push_core(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, config_ref);
    if (lua_pcall(L, 2, 2, 0) != LUA_OK)
        goto failed;
    lua_Integer n = luaL_len(L, -2);
    for (lua_Integer i = 1; i <= n + (all && lua_isstring(L, -1)); i++) {
        if (i <= n)
            lua_rawgeti(L, -2, i);
        else
            lua_pushvalue(L, -1);
        const char *line = lua_tostring(L, -1);
        if (to_stderr)
            fprintf(stderr, "%s\n", line ? line : "?");
        else
            log_error("config", "%s", line ? line : "?");
        lua_pop(L, 1);
        problems++;
    }
    lua_settop(L, top);
    return problems;
failed:
    if (to_stderr)
        fprintf(stderr, "daz: cannot check the plugins: %s\n", lua_tostring(L, -1));
    else
        log_error("plugins", "cannot check the plugins: %s", lua_tostring(L, -1));
    lua_settop(L, top);
    return -1;
}

/* Startup (DESIGN §9): bus, plugin host and rooms, then the database; the
 * rooms' saved backoff is read on the first connection and the rooms connect
 * while the migrations run; plugins start once the database is ready, and
 * only then do the rooms join their channels (cytube_start_joining), so no
 * plugin misses a room event. Health last. */
static void on_sql_ready(int ok, const char *message, void *ctx);
static void on_backoff_loaded(void *ctx);

static int app_start(struct app *app)
{
    struct bus_options bo = {
        .default_capacity = (size_t)app->cfg.bus_default_capacity,
        .dispatch_per_turn = (int)app->cfg.bus_dispatch_per_turn,
        .max_types = 4096,
    };
    app->bus = bus_new(app->loop, &bo);
    if (!app->bus || config_each_buffer_size(app->L, &app->cfg, set_capacity, app->bus) != 0) {
        log_error("main", "cannot create the event bus");
        return -1;
    }
    struct host_options ho = {
        .instruction_budget = app->cfg.host_instruction_budget,
        .budget_after_us = app->cfg.host_budget_after_ms * 1000,
        .degraded_after_errors = (int)app->cfg.host_degraded_after_errors,
        .inbox_size = (size_t)app->cfg.host_inbox_size,
    };
    app->host = host_new(app->loop, app->bus, app->L, &ho);
    if (!app->host || lua_api_open(app->L, app->host) != 0) {
        log_error("main", "cannot start the Lua plugin host");
        return -1;
    }
    set_lua_path(app->L);
    /* Plugin settings are config: checked before anything connects. The
     * files compiled here are the ones start runs. */
    int bad = check_plugins(app->L, app->cfg.lua_ref, 0, 0);
    if (bad != 0) {
        app->config_error = bad > 0;
        return -1;
    }
    /* Rooms: created and attached to the bus before the plugins, connected
     * once their saved backoff is known, joined once every plugin has started. */
    app->rooms = lua_rooms_create(app->L, app->cfg.lua_ref, app->loop, app->bus);
    if (!app->rooms || cytube_attach(app->rooms) != 0) {
        log_error("main", "cannot set up the CyTube rooms");
        return -1;
    }
    lua_rooms_open(app->L, app->rooms);

    /* The database: connected and migrated before any plugin starts (they
     * may query from their first timer); app_start_rest runs once it is. */
    char sql_err[512];
    app->sql = sql_new(app->loop, app->bus, app->L, app->cfg.lua_ref, sql_err, sizeof sql_err);
    if (!app->sql) {
        log_error("sql", "%s", sql_err);
        return -1;
    }
    if (lua_db_open(app->L, app->host, sql_pool(app->sql), sql_writer(app->sql), sql_spool(app->sql)) != 0)
        return -1;
    if (lua_http_open(app->L, app->host, app->loop, app->cfg.lua_ref) != 0)
        return -1;
    sql_start(app->sql, on_sql_ready, app);
    /* Queued now, so it is the first query on the first connection: the
     * rooms can then connect (discovery, WebSocket, handshake: ~20 ms) while
     * the migrations, the writer's catalog and the plugins come up. */
    app->backoff = room_backoff_start(sql_pool(app->sql), app->bus, app->rooms, on_backoff_loaded, app);
    if (!app->backoff) {
        log_error("main", "cannot load the rooms' backoff state (out of memory)");
        return -1;
    }
    /* While the server starts our backend. */
    cytube_prepare(app->rooms);
    return 0;
}

/* Startup, once the database is ready: plugins, rooms, health. */
static int app_start_rest(struct app *app)
{
    if (host_start_plugins(app->host, app->cfg.lua_ref) != 0)
        return -1;
    cytube_start_joining(app->rooms);

    /* Health last (DESIGN §9): it reports on everything above. */
    if (app->cfg.health_enabled && app->cfg.health_port != 0) {
        char err[256];
        app->health = health_start(app->cfg.health_bind, app->cfg.health_port, app->cfg.health_live_timeout_ms,
                                   err, sizeof err);
        if (!app->health) {
            log_error("main", "%s", err);
            return -1;
        }
    }
    app->metrics = metrics_new(app->loop, app->health, app->cfg.health_refresh_ms);
    if (!app->metrics || metrics_add_provider(app->metrics, bus_metrics, app->bus) != 0 ||
        metrics_add_provider(app->metrics, plugin_metrics, app->host) != 0) {
        log_error("main", "cannot set up health reporting");
        return -1;
    }
    app->sql_health = (struct sql_health){app->sql, &app->sql_ready};
    if (metrics_add_provider(app->metrics, sql_metrics, &app->sql_health) != 0 ||
        metrics_add_provider(app->metrics, cytube_metrics, app->rooms) != 0 || /* rooms: state, counters */
        metrics_add_provider(app->metrics, http_metrics, lua_http_curl()) != 0) {
        log_error("main", "cannot set up health reporting for the rooms");
        return -1;
    }
    return 0;
}

/* The saved backoff is known (a restart keeps its timers): rooms connect,
 * and join when cytube_start_joining says so. */
static void on_backoff_loaded(void *ctx)
{
    struct app *app = ctx;
    if (app->stopping)
        return;
    cytube_connect_all(app->rooms);
}

static void on_sql_ready(int ok, const char *message, void *ctx)
{
    struct app *app = ctx;
    if (app->stopping)
        return;
    if (!ok)
        log_error("sql", "%s", message);
    app->sql_ready = ok;
    if (!ok) {
        app->failed = 1;
        app_shutdown(app, "startup failed");
        return;
    }
    /* The rooms' backoff goes to the database only once the start has
     * succeeded: after a failed one, the pool closes under those queries and
     * their errors would read like a second failure. */
    if (app_start_rest(app) != 0) {
        app->failed = 1;
        app_shutdown(app, "startup failed");
        return;
    }
    room_backoff_db_ready(app->backoff);
    log_info("main", "ready");
}

/* A config that joins no channel runs (health, plugins, database) but would
 * look idle for no reason: said at start, with what to change. */
static const char *no_channel_note(const struct daz_config *cfg)
{
    return cfg->room_count == 0
               ? "joins no channel: core.rooms is empty (the shipped config.lua joins DAZ_CHANNEL when it is set)"
               : "joins no channel: every room in core.rooms has enabled = false";
}

static lua_State *new_lua(void)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return NULL;
    luaL_openlibs(L);
    /* Most garbage is per-event tables that die young: the generational
     * collector handles that for a fraction of the incremental one's work. */
    lua_gc(L, LUA_GCGEN, 0, 0);
    embedded_lua_preload(L);
    return L;
}

/* -reset-backoff: connects with the configured database (no migrations, no
 * plugins, no rooms), deletes the saved backoff rows and exits: 0, or 1 when
 * the database cannot be reached or refuses. */
#define RESET_TIMEOUT_MS 30000

struct reset_run {
    struct sql *sql;
    uv_timer_t timeout;
    const char *channel;
    int finished, rc;
};

static void reset_stopped(void *ctx) { (void)ctx; }

static void reset_finish(struct reset_run *rr, int rc)
{
    if (rr->finished)
        return;
    rr->finished = 1;
    rr->rc = rc;
    uv_close((uv_handle_t *)&rr->timeout, on_close_noop);
    sql_stop(rr->sql, reset_stopped, rr);
}

static void on_reset_done(long deleted, const char *error, void *ctx)
{
    struct reset_run *rr = ctx;
    if (rr->finished)
        return;
    if (error) {
        fprintf(stderr, "daz: cannot clear the saved backoff: %s\n", error);
        reset_finish(rr, 1);
        return;
    }
    printf("cleared the saved backoff of %s (%ld row%s)\n", rr->channel ? rr->channel : "every room", deleted,
           deleted == 1 ? "" : "s");
    reset_finish(rr, 0);
}

static void on_reset_timeout(uv_timer_t *t)
{
    struct reset_run *rr = t->data;
    fprintf(stderr, "daz: cannot clear the saved backoff: no database connection within %d s\n",
            RESET_TIMEOUT_MS / 1000);
    reset_finish(rr, 1);
}

static int reset_backoff(struct app *app, const char *channel)
{
    app->loop = uv_default_loop();
    struct bus_options bo = {.default_capacity = 64, .dispatch_per_turn = 64, .max_types = 64};
    app->bus = bus_new(app->loop, &bo);
    char err[512];
    app->sql = app->bus ? sql_new(app->loop, app->bus, app->L, app->cfg.lua_ref, err, sizeof err) : NULL;
    if (!app->sql) {
        fprintf(stderr, "daz: %s\n", app->bus ? err : "cannot create the event bus");
        return 1;
    }
    struct reset_run rr = {.sql = app->sql, .channel = channel};
    uv_timer_init(app->loop, &rr.timeout);
    rr.timeout.data = &rr;
    uv_timer_start(&rr.timeout, on_reset_timeout, RESET_TIMEOUT_MS, 0);
    pg_pool_start(sql_pool(app->sql));
    if (room_backoff_reset(sql_pool(app->sql), channel, on_reset_done, &rr) != 0) {
        fprintf(stderr, "daz: cannot clear the saved backoff (out of memory)\n");
        reset_finish(&rr, 1);
    }
    uv_run(app->loop, UV_RUN_DEFAULT);
    bus_close(app->bus);
    uv_run(app->loop, UV_RUN_DEFAULT);
    return rr.rc;
}

int main(int argc, char **argv)
{
    struct options opt = {0};
    int rc = parse_flags(argc, argv, &opt);
    if (rc != 0)
        return rc == 1 ? 0 : 2;

    log_setup(LOG_INFO, LOG_FORMAT_AUTO);
    struct app app = {0};
    app.L = new_lua();
    if (!app.L) {
        log_error("main", "cannot create the Lua state (out of memory)");
        return 1;
    }

    /* Overrides: the environment first, then flags, so flags win. */
    struct config_override overrides[MAX_OVERRIDES];
    char arena[16384];
    int n = config_env_overrides(overrides, MAX_OVERRIDES - 2, arena, sizeof arena);
    if (opt.health_port)
        overrides[n++] = (struct config_override){"health.port", opt.health_port, "-health-port"};
    if (opt.verbose)
        overrides[n++] = (struct config_override){"log.level", "debug", "-verbose"};

    char problems[8192];
    if (config_load(app.L, opt.config_path, overrides, n, &app.cfg, problems, sizeof problems) != 0) {
        fprintf(stderr, "%s", problems);
        lua_close(app.L);
        return 2;
    }
    if (opt.check_config) {
        set_lua_path(app.L);
        int bad = check_plugins(app.L, app.cfg.lua_ref, 1, 1);
        if (bad != 0) {
            config_free(app.L, &app.cfg);
            lua_close(app.L);
            return 2;
        }
        printf("%s: ok (%d room(s), database: %s)\n", opt.config_path, app.cfg.room_count,
               app.cfg.database_configured ? "configured" : "local");
        if (app.cfg.enabled_room_count == 0)
            printf("note: %s\n", no_channel_note(&app.cfg));
        config_free(app.L, &app.cfg);
        lua_close(app.L);
        return 0;
    }
    log_setup(app.cfg.log_level, app.cfg.log_format);
    if (opt.reset_backoff) {
        rc = reset_backoff(&app, opt.reset_channel);
        if (uv_loop_close(app.loop) != 0)
            log_warn("main", "loop closed with handles still open");
        config_free(app.L, &app.cfg);
        lua_close(app.L);
        sql_free(app.sql);
        bus_free(app.bus);
        log_clear_secrets();
        return rc;
    }
    log_info("main", "daz %s starting (config %s, %d room(s))", DAZ_VERSION, opt.config_path,
             app.cfg.room_count);
    if (app.cfg.enabled_room_count == 0)
        log_warn("main", "%s", no_channel_note(&app.cfg));
    log_debug("config", "effective config: %s", app.cfg.description ? app.cfg.description : "?");

    app.loop = uv_default_loop();
    if (start_signals(&app) != 0 || app_start(&app) != 0) {
        app.failed = 1;
        app_shutdown(&app, app.config_error ? "config error" : "startup failed");
    }

    uv_run(app.loop, UV_RUN_DEFAULT);
    lua_rooms_close();
    cytube_free(app.rooms); /* finishes libwebsockets' teardown after its handles closed */
    app.rooms = NULL;

    rc = uv_loop_close(app.loop);
    if (rc != 0)
        log_warn("main", "loop closed with handles still open: %s", uv_strerror(rc));
    config_free(app.L, &app.cfg);
    if (app.host) {
        long refs = host_refs_outstanding(app.host);
        if (refs != 0)
            log_warn("main", "%ld Lua registry refs still held at exit", refs);
        else
            log_debug("main", "all Lua registry refs released");
    }
    health_stop(app.health); /* joins the HTTP thread */
    metrics_free(app.metrics);
    lua_close(app.L);
    host_free(app.host);
    lua_http_free();
    sql_free(app.sql);
    room_backoff_free(app.backoff);
    bus_free(app.bus);
    log_info("main", "stopped");
    log_clear_secrets();
    return app.config_error ? 2 : app.failed ? 1 : 0;
}
