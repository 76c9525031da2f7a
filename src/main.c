/* main: flags, the startup sequence (DESIGN §9), signals and orderly shutdown.
 * Uses config, log, and libuv for the loop. */
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "embedded.h"
#include "log.h"
#include "version.h"

#define MAX_OVERRIDES 128

struct options {
    const char *config_path;
    const char *health_port;
    int verbose;
    int check_config;
};

struct app {
    uv_loop_t *loop;
    lua_State *L;
    struct daz_config cfg;
    uv_signal_t sigint, sigterm, sighup;
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
        if (takes_value && !value) {
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

/* Shutdown in the reverse order of startup (DESIGN §9); the loop ends when
 * the last handle is closed. */
static void app_shutdown(struct app *app, const char *why)
{
    if (app->stopping)
        return;
    app->stopping = 1;
    log_info("main", "shutting down (%s)", why);
    uv_close((uv_handle_t *)&app->sighup, on_close_noop);
    uv_close((uv_handle_t *)&app->sigint, on_close_noop);
    uv_close((uv_handle_t *)&app->sigterm, on_close_noop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (signum == SIGHUP) {
        log_info("main", "SIGHUP: plugin reload requested");
        return;
    }
    app_shutdown(app, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static int start_signal(struct app *app, uv_signal_t *h, int signum)
{
    int rc = uv_signal_init(app->loop, h);
    if (rc == 0) {
        h->data = app;
        rc = uv_signal_start(h, on_signal, signum);
    }
    if (rc != 0)
        log_error("main", "cannot watch signal %d: %s", signum, uv_strerror(rc));
    return rc;
}

static lua_State *new_lua(void)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return NULL;
    luaL_openlibs(L);
    embedded_lua_preload(L);
    return L;
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
        printf("%s: ok (%d room(s), database: %s)\n", opt.config_path, app.cfg.room_count,
               app.cfg.database_configured ? "configured" : "local");
        config_free(app.L, &app.cfg);
        lua_close(app.L);
        return 0;
    }
    log_setup(app.cfg.log_level, app.cfg.log_format);
    log_info("main", "daz %s starting (config %s, %d room(s))", DAZ_VERSION, opt.config_path,
             app.cfg.room_count);
    log_debug("config", "effective config: %s", app.cfg.description ? app.cfg.description : "?");

    app.loop = uv_default_loop();
    int failed = start_signal(&app, &app.sigint, SIGINT) || start_signal(&app, &app.sigterm, SIGTERM) ||
                 start_signal(&app, &app.sighup, SIGHUP);
    if (failed)
        app_shutdown(&app, "startup failed");
    else
        log_info("main", "ready");

    uv_run(app.loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(app.loop);
    if (rc != 0)
        log_warn("main", "loop closed with handles still open: %s", uv_strerror(rc));
    config_free(app.L, &app.cfg);
    lua_close(app.L);
    log_info("main", "stopped");
    log_clear_secrets();
    return failed ? 1 : 0;
}
